"""Detached runs through the real supervisor.

- the process that started training is killed (its whole process group, as a closing terminal
  would) and the run still finishes, and `runs` says so (the trainer is the replay of a
  recorded real run, held until the launcher is gone);
- the trainer is SIGKILLed right after its first checkpoint (held there by a hook in the
  config, tests/pause_hook.py) and `resume` completes the run (real xtuner; `make test-all`:
  the two-process run in test_runs_distributed.py is the kill-and-resume of `make test`);
- `stop` ends the whole process group and leaves nothing behind, even when the launcher ignored
  SIGINT (as a child of a non-interactive shell does): the one real stop of `make test`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.runs import get_run, start_run, stop_run, wait_run
from engine.runs.control import supervisor_alive, trainer_alive
from engine.runs.monitor import RunMonitor
from engine.workspace import Workspace

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ANSWER = "我是伍鲜同志的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"
RUN_TIMEOUT = 480  # iteration time swings up to 10x on shared CPUs


@pytest.fixture
def demo_model(demo_model_dir) -> Path:
    return demo_model_dir


def pause_after(config: Path, iteration: int, monkeypatch) -> None:
    """Hold the real run after ``iteration`` (its checkpoint written) until released."""
    from pause_hook import PAUSE_CONFIG_TAIL

    text = config.read_text(encoding="utf-8") + PAUSE_CONFIG_TAIL.format(at=iteration)
    config.write_text(text, encoding="utf-8")
    paths = [str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))  # the trainer imports the hook


def _workspace(
    root: Path, model: Path, *, max_iters: int, save_steps: int
) -> tuple[Workspace, Path]:
    from engine.config import render_config, write_config

    ws = Workspace(root).ensure()
    data = [{"conversation": [{"system": "", "input": "请介绍一下你自己", "output": ANSWER}]}] * 20
    ws.dataset_path.parent.mkdir(parents=True, exist_ok=True)
    ws.dataset_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    rendered = render_config(
        model_path=str(model),
        data_path=str(ws.dataset_path),
        profile="cpu",
        overrides={
            "max_iters": max_iters,
            "save_steps": save_steps,
            "evaluation_freq": 1000,
            "max_length": 64,
            "max_new_tokens": 4,
        },
    )
    return ws, write_config(ws, rendered)


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(int(entry.name))
    return found


def test_run_outlives_the_process_that_started_it(tmp_path, demo_model, capsys):
    ws, config = _workspace(tmp_path / "ws", demo_model, max_iters=2, save_steps=2)
    # `xtuner-wizard train --wait` in its own process group, as in a terminal; then the group is
    # SIGKILLed, as when the terminal or the SSH link goes away. The trainer is the replay of a
    # recorded run, held at its first iteration until the launcher is gone.
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from replay_trainer import replay_argv\n"
        "import engine.runs.launch as launch\n"
        "launch.train_env_and_argv = replay_argv\n"
        "from engine.cli import main\n"
        "sys.exit(main())\n"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", code, "train", "--wait", "--workspace", str(ws.root)],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "REPLAY_HOLD_AT": "1"},
    )
    first = launcher.stdout.readline().decode()
    assert first.startswith("run ") and "started" in first, first
    run_id = first.split()[1]
    record = _wait_for(lambda: get_run(ws, run_id).pid and get_run(ws, run_id), 60, "the pid")
    _wait_for(lambda: (Path(record.work_dir) / "replay.held.1").exists(), RUN_TIMEOUT, "iter 1")
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    assert supervisor_alive(record)
    (Path(record.work_dir) / "replay.release.1").touch()

    record = wait_run(ws, run_id, timeout=RUN_TIMEOUT)
    assert record.state == "succeeded", (record.cause, record.log_path.read_text()[-3000:])
    assert record.exit_code == 0
    assert Path(record.checkpoint).name == "iter_40.pth"  # the recorded run's last
    assert record.command.startswith("xtuner train internlm2_chat_1_8b_qlora_alpaca_e3_copy.py")
    assert "train" in ws.load_state().done

    assert main(["runs", "--json", "--workspace", str(ws.root)]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["state"], r["exit_code"]) for r in runs] == [(run_id, "succeeded", 0)]
    assert main(["runs", "--workspace", str(ws.root)]) == 0
    assert f"{run_id}    succeeded" in capsys.readouterr().out
    # attach on the finished run shows the outcome and exits with it
    assert main(["attach", "--workspace", str(ws.root)]) == 0
    out = capsys.readouterr().out
    assert "[40/40] 100%" in out and f"run {run_id}: succeeded" in out
    assert "--- evaluation (before training) ---" in out


@pytest.mark.long  # the kill-and-resume of `make test` is the two-process one
def test_trainer_killed_after_first_checkpoint_then_resume_completes(
    tmp_path, demo_model, capsys, monkeypatch
):
    ws, config = _workspace(tmp_path / "ws", demo_model, max_iters=6, save_steps=2)
    pause_after(config, 2, monkeypatch)
    first = start_run(ws, config)
    work = Path(first.work_dir)
    _wait_for(lambda: (work / "pause.held.2").exists(), RUN_TIMEOUT, "the first checkpoint")
    trainer = get_run(ws, first.id).trainer_pid
    os.kill(trainer, signal.SIGKILL)
    killed = wait_run(ws, first.id, timeout=60)
    assert killed.state == "failed" and killed.exit_code == -9
    assert killed.cause_kind == "killed" and "resume" in killed.fix
    assert RunMonitor.for_record(killed).poll().phase == "failed"

    # `resume --wait` follows the new run live (plain lines: stdout is not a tty here)
    assert main(["resume", "--wait", "--workspace", str(ws.root)]) == 0
    out = capsys.readouterr().out
    assert f"resuming run {first.id} from work_dirs/" in out
    assert "[6/6] 100%" in out and "succeeded" in out
    resumed = get_run(ws)
    assert resumed.previous_run == first.id
    assert Path(resumed.resumed_from).name == "iter_2.pth"
    assert "--resume" in resumed.argv and "--resume" in resumed.command
    done = wait_run(ws, resumed.id, timeout=60)
    assert done.state == "succeeded", (done.cause, done.log_path.read_text()[-3000:])
    assert Path(done.checkpoint).name == "iter_6.pth"

    snap = RunMonitor.for_record(done).poll()
    assert snap.phase == "done" and snap.resumes == 1
    assert [it for it, _ in snap.losses] == [1, 2, 3, 4, 5, 6]
    assert snap.iteration == snap.max_iters == 6
    # the resumed run trained into a folder of its own, from iteration 3 on
    assert Path(done.work_dir) != work
    newest = sorted(p for p in Path(done.work_dir).iterdir() if p.is_dir())[-1]
    log = (newest / f"{newest.name}.log").read_text(encoding="utf-8")
    assert "resumed epoch: 0, iter: 2" in log and "Iter(train) [1/6]" not in log


def test_stop_ends_the_whole_process_group(tmp_path, demo_model):
    ws, config = _workspace(tmp_path / "ws", demo_model, max_iters=400, save_steps=400)
    # started from a process that ignores SIGINT, as a background child of a script does
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "from engine.workspace import Workspace; from engine.runs import start_run\n"
        f"print(start_run(Workspace({str(ws.root)!r}), {str(config)!r}).id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    mon = RunMonitor.for_record(get_run(ws, run_id))
    _wait_for(lambda: mon.poll().iteration >= 1, RUN_TIMEOUT, "the first iteration", 0.5)
    record = get_run(ws, run_id)
    assert trainer_alive(record)

    stopped = stop_run(ws, run_id, timeout=60)
    assert stopped.state == "stopped"
    assert stopped.cause_kind == "stopped" and "no checkpoint is written" in stopped.cause
    assert not trainer_alive(record)
    assert not supervisor_alive(record)
    assert _processes_mentioning(str(config)) == []
    # SIGINT did it (default handling restored despite the launcher ignoring it)
    assert "KeyboardInterrupt" in record.log_path.read_text(encoding="utf-8")
    assert RunMonitor.for_record(stopped).poll().phase == "stopped"
