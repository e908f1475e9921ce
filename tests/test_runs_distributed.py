"""Runs on several processes through the wizard's run machinery: ``start_run(plan=...)`` builds
the torchrun line xtuner's entry point runs, the record keeps the GPUs and DeepSpeed stage for
``resume``, ``stop`` ends every process of the tree (torchrun puts each worker in a session of
its own), and the supervisor kills workers a dead torchrun left behind.

The GPU count is given (``gpus_found``): this machine has none; the workers run on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from test_config_tui import make_workspace, settle
from test_distributed import CPU_DDP_FOOTER, CPU_DDP_HEADER, ZERO2_FILES, _folder
from test_runs_records import _record
from test_runs_slow import (  # noqa: F401
    _processes_mentioning,
    _wait_for,
    _workspace,
    demo_model,
    pause_after,
)
from train_support import write_checkpoint

from engine.cli import main as cli_main
from engine.distributed import LaunchPlan, deepspeed_version
from engine.errors import WizardError
from engine.runs import get_run, last_checkpoint, list_runs, resume_run, start_run, stop_run
from engine.runs.control import supervisor_alive, wait_run
from engine.runs.monitor import RunMonitor
from engine.runs.processes import alive, process_tree
from engine.runs.records import RunRecord
from engine.xtuner_env import xtuner_package_dir

CFG = "cfg.py"
# mmengine runs a config's code when it loads it: each worker waits here, alive, never training
SLEEPING_CONFIG = "import time\ntime.sleep(300)\n"


def _shown(command: str) -> str:
    """The command without ``PORT=N`` (set when another job holds torch's default port)."""
    return re.sub(r" PORT=\d+", "", command)


def _workers(record: RunRecord) -> list[int]:
    """torchrun's workers: its children that lead sessions of their own."""
    out = []
    for pid in process_tree(record.trainer_pid):
        try:
            if os.getsid(pid) == pid:
                out.append(pid)
        except OSError:
            continue
    return out


def _started_torchrun(ws, **kw) -> tuple[RunRecord, list[int]]:
    """A 2-process run of a config that never gets to train, once both workers exist."""
    (ws.root / CFG).write_text(SLEEPING_CONFIG, encoding="utf-8")
    record = start_run(ws, CFG, plan=LaunchPlan(2), gpus_found=2, **kw)
    record = _wait_for(lambda: get_run(ws, record.id).trainer_pid and get_run(ws, record.id),
                       60, "the trainer")  # fmt: skip
    workers = _wait_for(lambda: len(_workers(record)) == 2 and _workers(record), 120, "workers")
    return record, workers


# -- records and checkpoints -------------------------------------------------------------------
def test_old_records_load_with_one_gpu_and_no_deepspeed(workspace):
    rec = _record(workspace, "20260101-000000", state="succeeded", started=1.0)
    data = json.loads(rec.record_path.read_text())
    for key in ("gpus", "deepspeed", "env"):
        del data[key]
    rec.record_path.write_text(json.dumps(data), encoding="utf-8")
    old = RunRecord.load(rec.record_path)
    assert (old.gpus, old.deepspeed, old.env) == (1, None, {})


def test_last_checkpoint_counts_zero_folders_not_empty_ones(tmp_path):
    wd = tmp_path / "work_dirs" / "cfg"
    wd.mkdir(parents=True)
    write_checkpoint(wd / "iter_2.pth")
    z4 = _folder(wd, "iter_4.pth", ZERO2_FILES)
    (wd / "iter_6.pth").mkdir()  # a save cut short
    assert last_checkpoint(wd) == z4
    (wd / "last_checkpoint").write_text(str(wd / "iter_6.pth"), encoding="utf-8")
    assert last_checkpoint(wd) == z4


# -- refusals: nothing starts --------------------------------------------------------------------
def test_start_refuses_more_gpus_than_found_and_several_nodes(workspace):
    (workspace.root / CFG).write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(WizardError) as err:
        start_run(workspace, CFG, plan=LaunchPlan(2), gpus_found=0)
    assert err.value.where == "--gpus" and "asked for 2 GPUs but found 0" in err.value.message
    with pytest.raises(WizardError, match="not 2 nodes"):
        start_run(workspace, CFG, plan=LaunchPlan(2, nodes=2, master_addr="10.0.0.1"))
    with pytest.raises(WizardError, match="unknown DeepSpeed stage 'zero9'"):
        start_run(workspace, CFG, plan=LaunchPlan(2, deepspeed="zero9"), gpus_found=2)
    assert list_runs(workspace) == []


def test_resume_keeps_the_runs_gpus_and_deepspeed(workspace):
    (workspace.root / CFG).write_text("x = 1\n", encoding="utf-8")
    _folder(workspace.work_dirs / "r1", "iter_8.pth", ZERO2_FILES)
    _record(workspace, "r1", state="failed", started=1.0, gpus=2, deepspeed="zero2")
    if deepspeed_version() is None:  # the stage is carried over: deepspeed is asked for
        with pytest.raises(WizardError, match="deepspeed is not installed"):
            resume_run(workspace, gpus_found=2)
    # the same kind of folder, from a run that had no DeepSpeed: a ZeRO folder needs it
    _folder(workspace.work_dirs / "r2", "iter_8.pth", ZERO2_FILES)
    _record(workspace, "r2", state="failed", started=2.0, gpus=2)
    with pytest.raises(WizardError) as err:
        resume_run(workspace, "r2", gpus_found=2)
    assert "--deepspeed zero2" in err.value.fix
    assert [r.id for r in list_runs(workspace)] == ["r1", "r2"]  # nothing started


def test_cli_train_gpus_here_fails_in_one_line(workspace, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # none visible, whatever the machine has
    (workspace.root / CFG).write_text("x = 1\n", encoding="utf-8")
    monkeypatch.chdir(workspace.root)  # CONFIG is typed relative to the folder it is typed in
    ws = ["--workspace", str(workspace.root)]
    assert cli_main(["train", CFG, "--gpus", "2", *ws]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --gpus: asked for 2 GPUs but found 0 here")
    assert "xtuner-wizard distributed --gpus N --no-gpu-check" in err
    # the Config step's choice is used when no flag is given
    workspace.set_choice("gpus", 2)
    assert cli_main(["train", CFG, *ws]) == 2
    assert "asked for 2 GPUs" in capsys.readouterr().err
    assert cli_main(["train", CFG, "--gpus", "0", *ws]) == 2
    assert "--gpus must be 1 or more" in capsys.readouterr().err
    if deepspeed_version() is None:
        assert cli_main(["train", CFG, "--gpus", "1", "--deepspeed", "zero2", *ws]) == 2
        assert "deepspeed is not installed" in capsys.readouterr().err
    assert list_runs(workspace) == []


# -- real torchrun processes (they never get to train) ------------------------------------------
def test_start_run_with_a_plan_runs_the_torchrun_line_and_stop_ends_the_tree(workspace):
    record, workers = _started_torchrun(workspace)
    try:
        env = {k: v for k, v in record.env.items() if k != "PORT"}
        assert (record.gpus, record.deepspeed, env) == (2, None, {"NPROC_PER_NODE": "2"})
        cfg, wd = str(workspace.root / CFG), str(workspace.work_dirs / record.id)
        argv = record.argv
        assert argv[1:3] == ["-m", "torch.distributed.run"]
        assert "--nproc_per_node=2" in argv and "--nnodes=1" in argv
        script = argv[argv.index(cfg) - 1]
        assert Path(script) == xtuner_package_dir() / "tools" / "train.py"
        assert argv[argv.index(cfg) :] == [cfg, "--work-dir", wd, "--launcher", "pytorch"]
        assert (
            _shown(record.command)
            == f"NPROC_PER_NODE=2 xtuner train cfg.py --work-dir work_dirs/{record.id}"
        )
        # each worker leads its own session: a signal to torchrun's group would miss them
        assert all(os.getsid(w) != record.trainer_pgid for w in workers)

        stopped = stop_run(workspace, record.id, timeout=30, grace=5)
        assert stopped.state == "stopped"
        assert alive([record.trainer_pid, *workers]) == []
        assert process_tree(record.trainer_pid) == []
        assert not supervisor_alive(stopped)
    finally:
        for pid in alive(workers):
            os.kill(pid, signal.SIGKILL)


def test_supervisor_kills_the_workers_of_a_killed_torchrun(workspace):
    record, workers = _started_torchrun(workspace)
    try:
        os.kill(record.trainer_pid, signal.SIGKILL)  # torchrun dies; its workers would live on
        done = wait_run(workspace, record.id, timeout=60)
        assert done.state == "failed" and done.exit_code == -9
        _wait_for(lambda: alive(workers) == [], 30, "the orphaned workers to end")
    finally:
        for pid in alive(workers):
            os.kill(pid, signal.SIGKILL)


def test_resume_of_a_two_gpu_run_is_two_gpus(workspace):
    (workspace.root / CFG).write_text(SLEEPING_CONFIG, encoding="utf-8")
    wd = workspace.work_dirs / "r1"
    wd.mkdir(parents=True)
    write_checkpoint(wd / "iter_2.pth")
    _record(workspace, "r1", state="failed", started=1.0, gpus=2)
    record = resume_run(workspace, gpus_found=2)
    try:
        assert record.previous_run == "r1" and record.gpus == 2
        assert record.argv[1:3] == ["-m", "torch.distributed.run"]
        assert record.argv[-4:] == ["--resume", str(wd / "iter_2.pth"), "--launcher", "pytorch"]
        assert _shown(record.command) == (
            f"NPROC_PER_NODE=2 xtuner train cfg.py --work-dir work_dirs/{record.id} "
            "--resume work_dirs/r1/iter_2.pth"
        )
    finally:
        assert stop_run(workspace, record.id, timeout=30, grace=5).state == "stopped"


# -- the Config pane: GPUs and DeepSpeed for the Train step -------------------------------------
async def test_config_pane_launch_choices(tmp_path, monkeypatch):
    from textual.widgets import Input, Select, Static

    from tui.app import WizardApp

    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "none")
    ws = make_workspace(tmp_path / "ws")
    app = WizardApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pane = app.query_one("#config")
        assert app.query_one("#launch-gpus", Input).value == "1"  # no GPU found: 1
        launch = str(app.query_one("#cfg-launch", Static).render())
        assert "xtuner train internlm2_chat_1_8b_qlora_alpaca_e3_copy.py" in launch
        assert "NPROC_PER_NODE" not in launch
        assert "gpus" not in ws.load_state().choices  # nothing chosen yet: nothing stored
        app.query_one("#launch-gpus", Input).focus()
        await pilot.pause()
        await pilot.press("ctrl+s")  # writing the config stores what the Train step will use
        await settle(pilot)
        choices = ws.load_state().choices
        assert (choices["gpus"], choices["deepspeed"]) == (1, None)

        await pilot.press("end", "backspace", "2")
        app.query_one("#launch-deepspeed", Select).value = "zero2"
        await settle(pilot)
        assert pane.launch_choice() == (2, "zero2")
        choices = ws.load_state().choices
        assert (choices["gpus"], choices["deepspeed"]) == (2, "zero2")
        launch = str(app.query_one("#cfg-launch", Static).render())
        assert (
            "NPROC_PER_NODE=2 xtuner train internlm2_chat_1_8b_qlora_alpaca_e3_copy.py "
            "--deepspeed deepspeed_zero2"
        ) in " ".join(launch.split())
        assert "0 GPU(s) found here: the Train step will refuse 2" in launch
        assert "ZeRO-2" in str(app.query_one("#deepspeed-help", Static).render())
        # they are launch choices, not config settings
        assert "gpus" not in pane.overrides and "deepspeed" not in pane.overrides

    # opened again: the stored choices are shown
    app = WizardApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.query_one("#launch-gpus", Input).value == "2"
        assert app.query_one("#launch-deepspeed", Select).value == "zero2"
        app.query_one("#launch-deepspeed", Select).value = "none"
        await settle(pilot)
        assert ws.load_state().choices["deepspeed"] is None


# -- a real 2-process training run through start_run, stopped (slow) ------------------------------
@pytest.mark.slow
@pytest.mark.long  # the one real stop of `make test` is test_runs_slow's one-process run
def test_two_process_run_stops_with_nothing_left(tmp_path, demo_model):  # noqa: F811
    ws, config = _two_process_workspace(tmp_path, demo_model, max_iters=400, save_steps=400)
    record = start_run(ws, config, plan=LaunchPlan(2), gpus_found=2)
    assert record.command.startswith("NPROC_PER_NODE=2 xtuner train ")
    mon = RunMonitor.for_record(record)

    def training() -> bool:
        run = get_run(ws, record.id)
        assert run.active, run.log_path.read_text(encoding="utf-8")[-3000:]
        return mon.poll().iteration >= 1

    _wait_for(training, 600, "the first iteration", 0.5)
    record = get_run(ws, record.id)
    tree = [record.trainer_pid, *process_tree(record.trainer_pid)]
    assert len(_workers(record)) == 2

    stopped = stop_run(ws, record.id, timeout=60)
    assert stopped.state == "stopped" and stopped.gpus == 2
    assert alive(tree) == [] and process_tree(record.trainer_pid) == []
    assert not supervisor_alive(stopped)
    assert _processes_mentioning(str(config)) == []
    log = record.log_path.read_text(encoding="utf-8")
    assert "GPU number: 2" in log  # mmengine's world size


def _two_process_workspace(tmp_path: Path, model: Path, **kw):
    ws, config = _workspace(tmp_path / "ws", model, **kw)
    text = config.read_text(encoding="utf-8")
    config.write_text(CPU_DDP_HEADER + text + CPU_DDP_FOOTER, encoding="utf-8")
    # enough packed samples that each of the 2 ranks gets some (20 records give none)
    data = json.loads(ws.dataset_path.read_text(encoding="utf-8"))
    ws.dataset_path.write_text(json.dumps(data * 20, ensure_ascii=False), encoding="utf-8")
    return ws, config


@pytest.mark.slow
def test_two_process_run_killed_then_resumed_on_two_processes(
    tmp_path,
    demo_model,  # noqa: F811
    monkeypatch,
):
    ws, config = _two_process_workspace(tmp_path, demo_model, max_iters=4, save_steps=2)
    pause_after(config, 2, monkeypatch)  # both ranks hold after iter_2.pth is written
    first = start_run(ws, config, plan=LaunchPlan(2), gpus_found=2)
    work = Path(first.work_dir)

    def saved() -> bool:
        assert get_run(ws, first.id).active, first.log_path.read_text(encoding="utf-8")[-3000:]
        return (work / "pause.held.2").exists()

    _wait_for(saved, 600, "the first checkpoint", 0.1)
    assert (work / "last_checkpoint").read_text().strip().endswith("iter_2.pth")
    record = get_run(ws, first.id)
    workers = _workers(record)
    os.kill(record.trainer_pid, signal.SIGKILL)  # torchrun only: the supervisor ends the rest
    killed = wait_run(ws, first.id, timeout=120)
    assert killed.state == "failed"
    _wait_for(lambda: alive(workers) == [], 30, "the orphaned workers to end")

    resumed = resume_run(ws, gpus_found=2)
    assert resumed.gpus == 2 and resumed.previous_run == first.id
    assert Path(resumed.resumed_from).name == "iter_2.pth"
    done = wait_run(ws, resumed.id, timeout=600)
    assert done.state == "succeeded", (done.cause, done.log_path.read_text()[-3000:])
    assert Path(done.checkpoint).name == "iter_4.pth"
    log = done.log_path.read_text(encoding="utf-8")
    assert "resumed epoch: 0, iter: 2" in log and "GPU number: 2" in log
