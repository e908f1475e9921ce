"""The Train step on real runs: a recorded one (snapshot), a failing one, a live demo run."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import waits

from engine.workspace import Workspace
from tui.app import WizardApp
from tui.screens import train as train_screen
from tui.screens.train import (
    TrainPane,
    eval_body,
    eval_title,
    hms,
    last_round,
    metrics_lines,
    progress_line,
    visible_log_lines,
)
from tui.widgets.loss_chart import LossChart

sys.path.insert(0, str(Path(__file__).parent))
from train_support import build_model, prepare_workspace, wait_for  # noqa: E402

DATA = Path(__file__).parent / "data" / "train_run"
SIZE = (120, 40)
# A fixed place (not a tmp path): the title bar shows the workspace, and snapshots must not vary.
SNAPSHOT_WS = Path("/tmp/xtuner-wizard-train-snapshot")
# The fixed folder is rewritten by several tests: under pytest-xdist they share one worker.
pytestmark = pytest.mark.xdist_group("test_train_screen")
WS_TOKEN = "@WORKSPACE@"  # stands for the workspace root in the recorded files


def install_recorded_run(root: Path) -> Workspace:
    """A workspace holding the recorded demo run (tests/data/train_run), paths made real."""
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(DATA / "workspace", root)
    for path in root.rglob("*"):
        if (
            path.is_file()
            and path.suffix in (".json", ".log", ".py", "")
            and "iter_" not in path.name
        ):
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            if WS_TOKEN in text:
                path.write_text(
                    text.replace(WS_TOKEN, str(root)), encoding="utf-8", errors="surrogateescape"
                )
    ws = Workspace(root).ensure()
    ws.update_state(current_step="train")
    return ws


def screen_text(app) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


@pytest.fixture
def steady_host(monkeypatch):
    """CPU and RAM as fixed numbers, and no GPU lines: live sensors would change the screen."""
    from engine.gpu import GpuSampler

    monkeypatch.setattr(train_screen, "_host_sample", lambda procs: (12.0, 3.1, 23.5))
    monkeypatch.setattr(GpuSampler, "sample", lambda self: [])


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("demo") / "demo-model")


# -- pure formatting, on the recorded run's snapshot ------------------------------------------
def recorded_snapshot():
    from engine.runs.monitor import RunMonitor
    from engine.runs.records import list_runs

    ws = install_recorded_run(SNAPSHOT_WS)
    record = list_runs(ws)[-1]
    return record, RunMonitor.for_record(record).poll()


def test_recorded_run_formats():
    record, snap = recorded_snapshot()
    assert record.state == "succeeded"
    assert progress_line(snap).startswith(f"iter {snap.max_iters}/{snap.max_iters} (100%)")
    assert "ETA" not in progress_line(snap)  # a finished run has none
    first, second = metrics_lines(snap)
    assert first.startswith(f"loss {snap.losses[-1][1]:.4f} · lr ")
    assert second.startswith(f"{snap.iter_time:.3f} s/it · tokens/s ")
    # the last evaluation: after training, one answer per evaluation input
    shown = last_round(snap.eval_samples)
    assert len(shown) >= 1 and all(s.iteration == shown[0].iteration for s in shown)
    assert eval_title(snap.eval_samples).startswith("answers after training, iter 40")
    assert "我在这里帮助伍鲜同志完成XTuner微调个人小助手的任务" in eval_body(snap.eval_samples)
    tail = visible_log_lines(snap.log_tail)
    assert tail and not any("Iter(train)" in ln for ln in tail)
    assert hms(3725) == "1:02:05" and hms(None) == "-:--:--"


# -- the pane on the recorded run -----------------------------------------------------------
async def test_reopened_pane_draws_the_whole_history(steady_host):
    ws = install_recorded_run(SNAPSHOT_WS)
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await waits.settle(pilot)
        pane = app.query_one(TrainPane)
        snap = pane._snapshot
        chart = app.query_one(LossChart)
        assert chart.point_count == len(snap.losses) == snap.max_iters
        text = screen_text(app)
        assert f"iter {snap.max_iters}/{snap.max_iters}" in text
        assert f"succeeded · run {pane._record.id}" in text
        assert "█" in text  # the chart is drawn
        from tui.widgets.step_rail import StepRail

        assert app.query_one(StepRail).state_of("train") == "done"
    assert "train" in ws.load_state().done


async def test_a_new_run_over_a_finished_one_asks_first(steady_host, monkeypatch):
    from tui.screens import train as train_screen

    ws = install_recorded_run(SNAPSHOT_WS)
    ws.set_choice("config", "internlm2_chat_1_8b_qlora_alpaca_e3_copy.py")
    started = []
    monkeypatch.setattr(TrainPane, "_launch", lambda self, action, text: started.append(text))
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await waits.settle(pilot)
        pane = app.query_one(TrainPane)
        assert pane._record is not None and pane._record.state == "succeeded"
        pane.action_start()
        await pilot.pause()
        assert isinstance(app.screen, train_screen.ConfirmNewRun)
        await pilot.press("n")
        await pilot.pause()
        assert started == []  # kept looking: nothing started
        pane.action_start()
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert len(started) == 1


def test_snapshot_recorded_run(snap_compare, steady_host):
    install_recorded_run(SNAPSHOT_WS)

    async def settle(pilot):
        await waits.settle(pilot)

    assert snap_compare(WizardApp(SNAPSHOT_WS), terminal_size=SIZE, run_before=settle)


async def test_pane_fits_80x24(steady_host):
    ws = install_recorded_run(SNAPSHOT_WS)
    app = WizardApp(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await waits.settle(pilot)
        text = screen_text(app)
        assert "loss per iteration" in text
        chart = app.query_one(LossChart)
        assert chart.region.width >= 50 and chart.region.bottom <= 23
        assert "█" in text


# -- a failing run --------------------------------------------------------------------------
OOM_CONFIG = """\
# A config that fails the way a too-large batch does on a GPU: torch's own OOM error.
import torch

raise torch.OutOfMemoryError(
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB "
    "of which 1.06 GiB is free."
)
"""


@pytest.mark.slow  # a real trainer process: ~1 min here
async def test_oom_run_shows_cause_and_fix(workspace: Workspace, steady_host):
    """A real trainer process (python -m xtuner.tools.train, under the supervisor) dies with
    torch.OutOfMemoryError; the pane says so in words, with the fix, and marks the step failed."""
    from engine.runs.launch import start_run
    from engine.runs.records import list_runs

    config = workspace.root / "oom_copy.py"
    config.write_text(OOM_CONFIG, encoding="utf-8")
    record = start_run(workspace, config)
    assert wait_for(lambda: not list_runs(workspace)[-1].active, timeout=300, every=1.0)
    workspace.update_state(current_step="train")
    app = WizardApp(workspace.root)
    async with app.run_test(size=SIZE) as pilot:
        await waits.settle(pilot)
        text = screen_text(app)
        assert f"failed · run {record.id}" in text
        assert "Training failed: the GPU ran out of memory" in text
        assert "Fix: lower batch_size or max_length" in text
        from tui.widgets.step_rail import StepRail

        assert app.query_one(StepRail).state_of("train") == "failed"


# -- a run from Start to its end --------------------------------------------------------------
until = waits.until  # the waits below end on events, not on time


async def test_watch_a_run_to_the_end(tmp_path, demo_model, steady_host, replay):
    """Start on the pane; the trainer is the replay of a recorded real demo run (40 iterations,
    its answers before and after training) through the real supervisor, records and monitor
    (tests/replay_trainer.py). It holds before iteration 20 until the chart has drawn 1-19.
    The same pane on a real xtuner run: test_train_tmux.py and the step snapshots."""
    from replay_trainer import held, release

    replay.setenv("REPLAY_HOLD_AT", "20")
    ws = prepare_workspace(tmp_path / "ws", model_dir=demo_model)
    ws.update_state(current_step="train")
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        chart = app.query_one(LossChart)
        assert "Start runs: $ xtuner train internlm2_chat_1_8b_qlora_alpaca_e3_copy.py" in (
            screen_text(app)
        )
        await pilot.click("#train-start")
        await until(pilot, lambda: pane._record is not None, "the run's record")
        await until(pilot, lambda: held(pane._record, 20), "the run to reach iteration 20")
        await until(pilot, lambda: chart.point_count == 19, "the chart to draw iterations 1-19")
        await until(pilot, lambda: "iter 19/40" in screen_text(app), "iter 19/40 on the screen")
        assert pane._record.active
        release(pane._record, 20)
        await until(pilot, lambda: pane._record.state == "succeeded", "the run to succeed")
        await until(pilot, lambda: "iter 40/40" in screen_text(app), "iter 40/40 on the screen")
        assert chart.point_count == 40
        assert "after training" in eval_title(pane._snapshot.eval_samples)
        assert "<|im_start|>" not in screen_text(app)  # the answers without the template's tokens
    assert "train" in ws.load_state().done
    record_files = list(ws.runs_dir.glob("*.json"))
    assert json.loads(record_files[0].read_text())["state"] == "succeeded"


async def test_stop_asks_first_and_resume_needs_a_checkpoint(
    tmp_path, demo_model, steady_host, replay
):
    """The replay holds before its first iteration (no checkpoint yet) until it is stopped."""
    from replay_trainer import held

    from engine.runs.records import list_runs
    from tui.screens.train import ConfirmStop

    replay.setenv("REPLAY_HOLD_AT", "1")
    ws = prepare_workspace(tmp_path / "ws", model_dir=demo_model)
    ws.update_state(current_step="train")
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        await pilot.click("#train-start")
        await until(pilot, lambda: pane._record is not None, "the run's record")
        await until(pilot, lambda: held(pane._record, 1), "the run to reach iteration 1")

        await pilot.click("#train-stop")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop), "the stop question")
        await pilot.press("n")  # keep training
        await until(pilot, lambda: not isinstance(app.screen, ConfirmStop), "the question gone")
        assert list_runs(ws)[-1].active

        await pilot.click("#train-stop")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStop), "the stop question")
        await pilot.press("y")
        await until(pilot, lambda: pane._record.state == "stopped", "the run to stop")
        assert list_runs(ws)[-1].state == "stopped"
        await until(pilot, lambda: "Stopped. Press r to resume" in screen_text(app), "Stopped.")

        # no checkpoint yet: resume says so instead of starting anything
        await pilot.click("#train-resume")
        await until(
            pilot,
            lambda: any("no checkpoint" in str(n.message) for n in app._notifications),
            "the no-checkpoint notice",
        )
        assert len(list_runs(ws)) == 1


# -- issue 14: what the screen says while a run starts, and answers without template tokens ---
def test_answers_are_shown_without_template_tokens():
    from tui.format import without_tokens

    _record, snap = recorded_snapshot()
    raw = "\n".join(s.text for s in snap.eval_samples)
    assert "<|im_end|>" in raw  # what EvaluateChatHook prints
    body = eval_body(snap.eval_samples, limit=20)
    assert "<|" not in body and "<s>" not in body
    assert "我是伍鲜同志的小助手" in body
    before = [sample for sample in snap.eval_samples if sample.iteration == 0]
    assert before and "noise is expected" in eval_title(before)  # the untrained demo model
    assert without_tokens("<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo</s>") == (
        "hi\nyo"
    )


def test_elapsed_moves_with_the_clock_while_the_trainer_loads(monkeypatch):
    from types import SimpleNamespace

    from tui.screens.train import time_line

    _record, snap = recorded_snapshot()
    starting = SimpleNamespace(
        phase="starting",
        losses=[],
        started_at=None,
        last_log_at=None,
        eta_seconds=None,
        log_tail=[
            "11/29 02:37:58 - mmengine - INFO - Config:",
            "11/29 02:37:59 - mmengine - INFO - Hooks will be executed in the following order:",
            "Map (num_proc=32):  24%|██▍       | 12/50 [00:02<00:50,  1.05s/ examples]",
        ],
    )
    record = SimpleNamespace(started=1000.0, ended=None, active=True)
    monkeypatch.setattr(train_screen, "now", lambda: 1035.0)
    assert time_line(starting, record) == (
        "elapsed 0:00:35 · preparing the dataset: Map (32) 12/50"
    )
    monkeypatch.setattr(train_screen, "now", lambda: 1036.0)
    assert time_line(starting, record).startswith("elapsed 0:00:36 · ")
    # a finished run: from its start to its end
    finished = SimpleNamespace(started=1000.0, ended=1291.0, active=False)
    assert time_line(snap, finished).startswith("elapsed 0:04:51")


def test_the_cpu_line_is_the_runs_own_processes(tmp_path):
    """A live process stands in for a run's trainer: its CPU and memory, not the machine's;
    a process is the run's only as engine.runs.control proves it (pid, start time, command
    line), never by the pid alone."""
    import dataclasses
    import subprocess

    from engine.runs.processes import ProcessIdentity
    from engine.runs.records import RunRecord
    from tui.screens.train import RunPoller, _host_sample

    ws = Workspace(tmp_path / "ws").ensure()
    work_dir = ws.work_dirs / "r1"
    busy = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", busy, "--work-dir", str(work_dir)])
    try:
        record = RunRecord(
            id="r1",
            workspace=str(ws.root),
            config=str(ws.root / "cfg.py"),
            work_dir=str(work_dir),
            command="xtuner train cfg.py",
            state="running",
            trainer_pid=proc.pid,
            trainer_started=ProcessIdentity.of(proc.pid).started,
        )
        poller = RunPoller(ws)
        procs = poller.run_processes(record)
        assert [p.pid for p in procs] == [proc.pid]
        _host_sample(procs)  # psutil measures CPU between two calls
        deadline = time.monotonic() + 20
        cpu = 0.0
        while cpu < 20 and time.monotonic() < deadline:
            proc_wait = poller.run_processes(record)
            time.sleep(0.2)  # the interval psutil measures CPU over (as a poll's interval)
            cpu, rss, total = _host_sample(proc_wait)
        assert cpu >= 20 and rss is not None and 0 <= rss < total
        # the same pid with another start time: another program now, not the run's
        reused = dataclasses.replace(record, trainer_started=record.trainer_started - 3600)
        assert poller.run_processes(reused) == []
        assert poller.run_processes(dataclasses.replace(record, state="succeeded")) == []
        assert _host_sample([])[0] is None
    finally:
        proc.kill()
        proc.wait()


# -- any earlier run: p picks it --------------------------------------------------------------
async def test_p_picks_an_earlier_run_and_shows_its_curve(steady_host):
    """The recorded run and a newer one stopped before its first iteration: the pane shows the
    newer; p lists both (id, state, iterations) and shows the one picked, its whole curve."""
    import re

    from engine.runs.records import RunRecord, list_runs
    from engine.workspace import STEPS
    from tui.screens.train import PickRun
    from tui.widgets.help import help_text

    ws = install_recorded_run(SNAPSHOT_WS)
    (recorded,) = list_runs(ws)
    newer = RunRecord(
        id="20261130-091500",
        workspace=str(ws.root),
        config=recorded.config,
        work_dir=str(ws.work_dirs / "20261130-091500"),
        command="xtuner train internlm2_chat_1_8b_qlora_alpaca_e3_copy.py",
        state="stopped",
        started=recorded.ended + 3600,
        ended=recorded.ended + 3660,
        exit_code=-2,
        cause_kind="stopped",
        cause="stopped on request",
    )
    newer.run_dir.mkdir(parents=True, exist_ok=True)
    newer.save()
    app = WizardApp(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await waits.settle(pilot)
        pane = app.query_one(TrainPane)
        chart = app.query_one(LossChart)
        assert pane._record.id == newer.id and chart.point_count == 0
        text = screen_text(app)
        footer = text.splitlines()[-1]
        assert "p Runs" in footer and "[ Prev" in footer  # every key within 80 columns
        assert re.search(r"^ +p +Runs$", help_text(pane, STEPS).plain, re.MULTILINE)

        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PickRun), "the list of runs")
        await waits.settle(pilot)
        text = screen_text(app)
        assert "20261130-091500  stopped    0 iterations" in text  # newest first
        assert "20261129-023742  succeeded  40/40 iterations" in text
        await pilot.press("down", "enter")
        await until(pilot, lambda: not isinstance(app.screen, PickRun), "the list closed")
        await until(pilot, lambda: pane._record.id == recorded.id, "the picked run shown")
        await waits.settle(pilot)
        assert chart.point_count == 40
        text = screen_text(app)
        assert f"succeeded · run {recorded.id}" in text and "iter 40/40" in text

        await pilot.press("p")  # esc goes back, and the shown run stays
        await until(pilot, lambda: isinstance(app.screen, PickRun), "the list of runs")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, PickRun), "the list closed")
        assert pane._record.id == recorded.id
