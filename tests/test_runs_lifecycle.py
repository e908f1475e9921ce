"""Runs you can trust: a folder per run, one start at a time, processes proven by pid and start
time, full disks, datasets broken after `config`, a supervisor killed after its trainer finished.

The trainer is the replay of a recorded real run (tests/replay_trainer.py) where only the
lifecycle is under test, held at the iterations a test names: the supervisor, records, monitor,
control and CLI are the real ones. Two concurrent `train` commands start real xtuner.
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
from replay_trainer import held, release

from engine.cli import main
from engine.errors import WizardError
from engine.runs import get_run, list_runs, refresh, resume_run, start_run, stop_run, wait_run
from engine.runs.checkpoints import is_whole, newest_checkpoint, resume_point
from engine.runs.processes import ProcessIdentity
from engine.runs.records import RunRecord

PROJECT = Path(__file__).resolve().parents[1]
DEADLINE = 300  # generous: a loaded machine is slow; the waits end on events, not on time


def wait_for(predicate, what: str, timeout: float = DEADLINE, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def ready_workspace(root: Path, model: Path):
    from train_support import prepare_workspace

    return prepare_workspace(root, model_dir=model)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- a folder per run --------------------------------------------------------------------------
def test_a_second_run_trains_in_a_folder_of_its_own(tmp_path, demo_model_dir, replay, capsys):
    ws = ready_workspace(tmp_path / "ws", demo_model_dir)
    config = ws.load_state().choices["config"]
    first = wait_run(ws, start_run(ws, config).id, timeout=DEADLINE)
    assert first.state == "succeeded", first.cause
    assert Path(first.work_dir) == ws.work_dirs / first.id
    assert [Path(p).name for p in first.checkpoints] == ["iter_32.pth", "iter_40.pth"]
    before = tree_bytes(Path(first.work_dir))

    replay.setenv("REPLAY_HOLD_AT", "1")
    second = start_run(ws, config)
    try:
        assert second.work_dir != first.work_dir
        wait_for(lambda: held(second, 1), "the second run's first iteration")
        assert main(["runs", "--workspace", str(ws.root)]) == 0
        listing = capsys.readouterr().out
        line = next(ln for ln in listing.splitlines() if ln.startswith(second.id))
        assert "running" in line and "40/40" not in line  # not the first run's progress
        stopped = stop_run(ws, second.id, timeout=30)
    finally:  # a failed assertion must not leave the held replay trainer running
        if refresh(get_run(ws, second.id)).active:
            stop_run(ws, second.id, timeout=30)
    assert stopped.state == "stopped"
    assert stopped.checkpoint is None and stopped.checkpoints == []  # nothing of the first's
    assert "no checkpoint" in stopped.cause and "iter_40" not in stopped.cause

    assert tree_bytes(Path(first.work_dir)) == before  # byte for byte
    assert get_run(ws, first.id).state == "succeeded"
    assert [r.state for r in list_runs(ws)] == ["succeeded", "stopped"]
    # merge and resume look only at a run's own folder: the first run is the one to merge
    from engine.export import resolve_source

    assert Path(resolve_source(ws).checkpoint) == Path(first.work_dir) / "iter_40.pth"
    with pytest.raises(WizardError, match="left no checkpoint"):
        resume_run(ws, second.id)


# -- one start at a time -----------------------------------------------------------------------
def test_two_train_commands_at_once_start_exactly_one_run(tmp_path, demo_model_dir):
    ws = ready_workspace(tmp_path / "ws", demo_model_dir)
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "from engine.cli import main\n"
        f"sys.exit(main(['train', '--workspace', {str(ws.root)!r}]))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    go.touch()
    results = [(p.wait(timeout=DEADLINE), *p.communicate()) for p in procs]
    try:
        codes = sorted(r[0] for r in results)
        assert codes == [0, 2], results
        loser = next(r for r in results if r[0] == 2)
        assert "is still training" in loser[2] and len(loser[2].strip().splitlines()) == 1
        assert "Traceback" not in loser[2]
        assert len(list_runs(ws)) == 1
    finally:
        for run in list_runs(ws):
            if refresh(run).active:
                stop_run(ws, run.id, timeout=30)


# -- a process is the run's only by pid, start time and command line --------------------------
def _record(ws, run_id: str, **kw) -> RunRecord:
    rec = RunRecord(
        id=run_id,
        workspace=str(ws.root),
        config=str(ws.root / "cfg.py"),
        work_dir=str(ws.work_dirs / run_id),
        command="xtuner train cfg.py",
        state="running",
        started=time.time(),
        **kw,
    )
    rec.run_dir.mkdir(parents=True, exist_ok=True)
    rec.save()
    return rec


def test_a_pid_now_owned_by_another_program_is_not_the_run(workspace):
    """After a reboot the recorded pids belong to other programs: the run is over, and stop
    never signals them."""
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    another = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = ProcessIdentity.of(other.pid).started
        rec = _record(
            workspace,
            "r1",
            pid=other.pid,
            supervisor_started=started - 3600,  # the supervisor started an hour earlier
            trainer_pid=another.pid,
            trainer_pgid=another.pid,
            trainer_started=ProcessIdentity.of(another.pid).started - 3600,
        )
        out = refresh(rec)
        assert out.state == "lost" and not out.active
        assert main(["stop", "r1", "--workspace", str(workspace.root)]) == 2
        # an old record with no start times: the command line decides (a `sleep` is no
        # supervisor, no trainer of this run)
        old = _record(workspace, "r2", pid=other.pid, trainer_pid=another.pid)
        assert refresh(old).state == "lost"
        assert other.poll() is None and another.poll() is None  # both still alive
    finally:
        for p in (other, another):
            p.kill()
            p.wait()


def test_the_run_s_own_live_trainer_keeps_it_running(workspace):
    work_dir = workspace.work_dirs / "r3"
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--work-dir", str(work_dir)],
        start_new_session=True,
    )
    try:
        rec = _record(
            workspace,
            "r3",
            pid=None,
            trainer_pid=fake.pid,
            trainer_pgid=fake.pid,
            trainer_started=ProcessIdentity.of(fake.pid).started,
        )
        rec.started = time.time() - 3600  # long past its start: the supervisor is gone
        rec.save()
        assert refresh(rec).state == "running"  # its trainer (pid, start, command line) lives
    finally:
        fake.kill()
        fake.wait()
    assert refresh(rec).state == "lost"


# -- full disk ---------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(path: Path) -> None:
    """Write ``path`` until the disk has no byte left."""
    import errno

    with open(path, "wb", buffering=0) as fh:
        chunk = b"\0" * (64 << 10)
        while chunk:
            try:
                fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]


def test_a_full_disk_during_a_run_is_recorded_and_its_cut_checkpoint_never_used(
    small_disk, demo_model_dir, replay, capsys
):
    ws = ready_workspace(small_disk / "ws", demo_model_dir)
    replay.setenv("REPLAY_HOLD_AT", "33")
    replay.setenv("REPLAY_CKPT_BYTES", str(4 << 20))
    run = start_run(ws, ws.load_state().choices["config"])
    wait_for(lambda: held(run, 33), "iteration 33 (after the first checkpoint)")
    whole = Path(run.work_dir) / "iter_32.pth"
    assert is_whole(whole)
    # another program fills the disk, but for room for the log: the next checkpoint is cut
    import shutil

    filler = small_disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * (shutil.disk_usage(small_disk).free - (1536 << 10)))
    release(run, 33)
    done = wait_run(ws, run.id, timeout=DEADLINE)
    assert done.state == "failed"
    assert done.cause_kind == "disk_full" and "disk full" in done.cause
    assert "iter_40.pth was cut short" in done.cause
    cut = Path(run.work_dir) / "iter_40.pth"
    assert cut.exists() and not is_whole(cut)
    # the disk is still full but for the supervisor's reserve, given back once it had written
    # the outcome there: the FILE says so, not only a reader's judgement from memory
    from engine.runs.supervise import RESERVE_BYTES

    assert shutil.disk_usage(small_disk).free <= RESERVE_BYTES
    on_disk = json.loads(run.record_path.read_text(encoding="utf-8"))
    assert on_disk["state"] == "failed" and on_disk["cause_kind"] == "disk_full"
    # its checkpoints are exactly the whole ones
    assert on_disk["checkpoints"] == [str(whole)] and done.checkpoints == [str(whole)]
    assert on_disk["checkpoint"] == str(whole)
    # mmengine's last_checkpoint names the cut one (as when the save of the file itself
    # succeeded): still never offered. Same length, written in place: no block is needed.
    last = Path(run.work_dir) / "last_checkpoint"
    assert len(str(cut)) == len(last.read_text(encoding="utf-8"))
    with open(last, "r+", encoding="utf-8") as fh:
        fh.write(str(cut))
    assert last.read_text(encoding="utf-8") == str(cut)
    fill_up(small_disk / "filler-2")  # the reserve's room too: the readers find no byte free
    # readers on the full disk answer in one line, never a traceback
    ws_args = ["--workspace", str(ws.root)]
    assert main(["runs", *ws_args]) == 0
    assert main(["attach", run.id, *ws_args]) == 1
    assert main(["stop", run.id, *ws_args]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "disk full" in captured.out
    # the cut checkpoint is never offered: resume takes the older whole one
    assert newest_checkpoint(run.work_dir) == whole
    assert resume_point(get_run(ws, run.id)) == whole
    from engine.export import resolve_source

    assert Path(resolve_source(ws).checkpoint) == whole  # merge takes the whole one too
    assert Path(resolve_source(ws, run=run.id).checkpoint) == whole
    filler.unlink()
    (small_disk / "filler-2").unlink()
    replay.setenv("REPLAY_HOLD_AT", "")
    resumed = resume_run(ws, run.id)
    assert Path(resumed.resumed_from) == whole
    assert wait_run(ws, resumed.id, timeout=DEADLINE).state == "succeeded"


def test_a_supervisor_that_dies_on_a_full_disk_is_read_as_disk_full(workspace, tmp_path):
    """No end line, no outcome in the record: what is left says disk full, not 'lost'."""
    rec = _record(workspace, "r4", pid=None)
    rec.started = time.time() - 3600
    rec.save()
    rec.log_path.write_text(
        "OSError: [Errno 28] No space left on device\n", encoding="utf-8"
    )  # the trainer's last words
    out = refresh(rec)
    assert out.state == "failed" and out.cause_kind == "disk_full"


# -- the dataset is checked again at launch ----------------------------------------------------
def test_a_dataset_broken_after_config_is_refused_before_launch(tmp_path, demo_model_dir, capsys):
    ws = ready_workspace(tmp_path / "ws", demo_model_dir)
    text = ws.dataset_path.read_text(encoding="utf-8")
    ws.dataset_path.write_text(text.replace('"output"', '"output":', 1), encoding="utf-8")
    state_before = ws.state_path.read_bytes()
    with pytest.raises(WizardError) as err:
        start_run(ws, ws.load_state().choices["config"])
    assert str(err.value.where).startswith(f"{ws.dataset_path}:")
    assert err.value.where.count(":") >= 2  # file:line:col
    assert main(["train", "--workspace", str(ws.root)]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1 and "the dataset is broken" in out[0] and str(ws.dataset_path) in out[0]
    assert list_runs(ws) == [] and not ws.work_dirs.exists()
    assert ws.state_path.read_bytes() == state_before


def test_a_model_folder_without_a_tokenizer_is_refused_before_launch(tmp_path, demo_model_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(demo_model_dir, model)
    for name in ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json"):
        (model / name).unlink(missing_ok=True)
    ws = ready_workspace(tmp_path / "ws", model)
    with pytest.raises(WizardError, match="has no tokenizer"):
        start_run(ws, ws.load_state().choices["config"])


def test_a_start_refuses_when_the_disk_cannot_hold_its_checkpoints(
    tmp_path, demo_model_dir, monkeypatch
):
    from engine.runs import launch

    ws = ready_workspace(tmp_path / "ws", demo_model_dir)
    free = launch.bytes_needed(demo_model_dir, _inputs(ws)) - 1
    monkeypatch.setattr(launch, "_free_bytes", lambda path: free)  # one byte short
    with pytest.raises(WizardError, match="not enough free disk") as err:
        start_run(ws, ws.load_state().choices["config"])
    assert "save_total_limit" in err.value.fix
    assert list_runs(ws) == []


def _inputs(ws):
    from engine.config.api import training_inputs

    return training_inputs(ws.path(ws.load_state().choices["config"]))


# -- a supervisor killed after its trainer finished --------------------------------------------
def test_a_supervisor_killed_after_training_finished_reads_succeeded(
    tmp_path, demo_model_dir, replay
):
    ws = ready_workspace(tmp_path / "ws", demo_model_dir)
    replay.setenv("REPLAY_HOLD_AT", "40")
    run = start_run(ws, ws.load_state().choices["config"])
    wait_for(lambda: held(run, 40), "the last iteration")
    record = get_run(ws, run.id)
    os.kill(record.pid, signal.SIGSTOP)  # the supervisor can record nothing from now on
    try:
        release(run, 40)
        trainer = ProcessIdentity(record.trainer_pid, record.trainer_started)
        wait_for(lambda: not trainer.alive(), "the trainer to finish")  # a zombie counts as gone
    finally:
        os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: not ProcessIdentity(record.pid, record.supervisor_started).alive(), "kill")
    assert get_run(ws, run.id).state == "running"  # the record itself never heard
    out = refresh(get_run(ws, run.id))
    assert out.state == "succeeded", (out.cause, out.checkpoint)
    assert Path(out.checkpoint).name == "iter_40.pth"
    assert json.loads(out.record_path.read_text())["state"] == "succeeded"
    assert "train" in ws.load_state().done
