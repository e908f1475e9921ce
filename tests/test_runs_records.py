"""Run records, refresh against live processes, refusals, and the CLI's answers (no training)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_support import write_checkpoint

from engine.cli import main
from engine.errors import WizardError
from engine.runs import get_run, last_checkpoint, list_runs, refresh, resume_run, start_run
from engine.runs.processes import ProcessIdentity
from engine.runs.records import RunRecord, new_run_id


def _record(ws, run_id: str, **kw) -> RunRecord:
    rec = RunRecord(
        id=run_id,
        workspace=str(ws.root),
        config=str(ws.root / "cfg.py"),
        work_dir=str(ws.work_dirs / run_id),
        command="xtuner train cfg.py",
        **kw,
    )
    rec.run_dir.mkdir(parents=True, exist_ok=True)
    rec.save()
    return rec


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_run_ids_are_unique_and_records_round_trip(workspace):
    ids = {new_run_id(workspace, now=1_800_000_000) for _ in range(3)}
    assert len(ids) == 3
    rec = _record(workspace, "20260101-000000", state="succeeded", started=1.0, exit_code=0)
    assert RunRecord.load(rec.record_path) == rec
    data = json.loads(rec.record_path.read_text())
    assert data["state"] == "succeeded" and data["command"] == "xtuner train cfg.py"


def test_get_run_latest_by_id_and_prefix(workspace):
    with pytest.raises(WizardError, match="no training runs"):
        get_run(workspace)
    _record(workspace, "20260101-000000", state="failed", started=1.0)
    _record(workspace, "20260102-000000", state="succeeded", started=2.0)
    assert get_run(workspace).id == "20260102-000000"
    assert get_run(workspace, "20260101").id == "20260101-000000"
    with pytest.raises(WizardError, match="ambiguous run '2026'"):
        get_run(workspace, "2026")
    with pytest.raises(WizardError, match="unknown run 'nope'"):
        get_run(workspace, "nope")
    assert [r.id for r in list_runs(workspace)] == ["20260101-000000", "20260102-000000"]


def test_refresh_marks_a_run_whose_supervisor_vanished_as_lost(workspace):
    rec = _record(workspace, "r1", state="running", pid=_dead_pid(), started=time.time())
    out = refresh(rec)
    assert out.state == "lost" and out.cause_kind == "lost"
    assert "start it again" in out.fix  # no checkpoint in the work dir
    assert get_run(workspace, "r1").state == "lost"  # written back


def _trainer_of(ws, run_id: str) -> subprocess.Popen:
    """A process that trains into the run's work dir (its command line says so)."""
    work_dir = ws.work_dirs / run_id
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "--work-dir", str(work_dir)],
        start_new_session=True,
    )


def test_refresh_keeps_an_orphaned_trainer_running(workspace):
    trainer = _trainer_of(workspace, "r2")
    try:
        rec = _record(
            workspace,
            "r2",
            state="running",
            pid=_dead_pid(),
            trainer_pid=trainer.pid,
            trainer_pgid=trainer.pid,
            trainer_started=ProcessIdentity.of(trainer.pid).started,
            started=time.time(),
        )
        assert refresh(rec).state == "running"
    finally:
        trainer.kill()
        trainer.wait()
    assert refresh(rec).state == "lost"


def test_start_refuses_a_missing_config_and_a_busy_workspace(workspace):
    with pytest.raises(WizardError, match="config not found"):
        start_run(workspace, "nope.py")
    (workspace.root / "cfg.txt").write_text("x")
    with pytest.raises(WizardError, match="not a Python config"):
        start_run(workspace, "cfg.txt")
    (workspace.root / "cfg.py").write_text("x = 1\n")
    sleeper = _trainer_of(workspace, "busy")
    try:
        # an active run whose trainer lives: a second start is refused
        _record(
            workspace,
            "busy",
            state="running",
            pid=_dead_pid(),
            trainer_pid=sleeper.pid,
            trainer_pgid=sleeper.pid,
            trainer_started=ProcessIdentity.of(sleeper.pid).started,
            started=time.time(),
        )
        with pytest.raises(WizardError, match="run busy is still training"):
            start_run(workspace, "cfg.py")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_resume_refuses_without_a_checkpoint(workspace):
    _record(workspace, "r3", state="failed", started=1.0)
    with pytest.raises(WizardError, match="left no checkpoint") as err:
        resume_run(workspace)
    assert "xtuner-wizard train" in err.value.fix


def test_last_checkpoint_follows_mmengine_marker_then_numbers(tmp_path):
    assert last_checkpoint(tmp_path) is None
    for n in (2, 10, 4):
        write_checkpoint(tmp_path / f"iter_{n}.pth")
    assert last_checkpoint(tmp_path).name == "iter_10.pth"  # numeric, not lexical
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_4.pth"))
    assert last_checkpoint(tmp_path).name == "iter_4.pth"
    # the workspace moved: the absolute path is stale but the file is here
    (tmp_path / "last_checkpoint").write_text("/elsewhere/work_dirs/cfg/iter_2.pth")
    assert last_checkpoint(tmp_path) == tmp_path / "iter_2.pth"


def test_a_checkpoint_cut_short_is_never_the_last_one(tmp_path):
    write_checkpoint(tmp_path / "iter_8.pth")
    write_checkpoint(tmp_path / "iter_16.pth")
    whole = (tmp_path / "iter_16.pth").read_bytes()
    (tmp_path / "iter_16.pth").write_bytes(whole[: len(whole) // 2])  # a full disk cut it
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_16.pth"))
    assert last_checkpoint(tmp_path) == tmp_path / "iter_8.pth"


def test_cli_answers_without_runs(workspace, capsys):
    ws = ["--workspace", str(workspace.root)]
    assert main(["runs", *ws]) == 0
    assert "no training runs yet" in capsys.readouterr().out
    assert main(["runs", "--json", *ws]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["train", *ws]) == 2
    assert "no config to train" in capsys.readouterr().err
    assert main(["resume", *ws]) == 2
    assert "no training runs" in capsys.readouterr().err
    _record(workspace, "20260101-000000", state="succeeded", started=1.0, exit_code=0)
    assert main(["stop", *ws]) == 2
    assert "is not running (it succeeded)" in capsys.readouterr().err
    assert main(["runs", *ws]) == 0
    assert "20260101-000000    succeeded" in capsys.readouterr().out


def test_orphaned_torchrun_workers_keep_a_run_alive_and_stop_ends_them(workspace):
    """torchrun starts each worker in a session of its own: with torchrun and the supervisor both
    SIGKILLed, the workers train on. Their command line (the train script and the run's own
    work dir) still ties them to the run: it stays running, and stop ends them."""
    from engine.runs.control import stop_run

    config = workspace.root / "cfg.py"
    fake_worker = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(60)",
        "/site-packages/xtuner/tools/train.py",
        str(config),
        "--work-dir",
        str(workspace.work_dirs / "r3"),
        "--launcher",
        "pytorch",
    ]
    worker = subprocess.Popen(fake_worker, start_new_session=True)
    try:
        dead = _dead_pid()
        rec = _record(
            workspace,
            "r3",
            state="running",
            pid=_dead_pid(),
            trainer_pid=dead,
            trainer_pgid=dead,
            started=time.time(),
        )
        assert refresh(rec).state == "running"  # a worker still trains into its work dir
        out = stop_run(workspace, "r3", timeout=5, grace=2)
        assert worker.wait(timeout=10) is not None
        assert out.state == "stopped"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_a_moved_workspace_keeps_its_runs_checkpoints_its_own(tmp_path):
    """A workspace folder moved (or copied) elsewhere: its records' paths are read inside the
    new place, so a run's checkpoints stay its own there (chat --run and merge once refused
    them as 'not a checkpoint of this workspace's runs', and the copy read the old folder)."""
    import shutil

    from test_train_screen import install_recorded_run
    from train_support import write_checkpoint

    from engine.runs.checkpoints import newest_checkpoint
    from engine.runs.records import list_runs
    from engine.workspace import Workspace

    old = install_recorded_run(tmp_path / "old")
    (run,) = list_runs(old)
    write_checkpoint(Path(run.work_dir) / "iter_40.pth")
    new_root = tmp_path / "moved"
    shutil.copytree(old.root, new_root, symlinks=True)
    shutil.rmtree(old.root)  # moved, not copied: nothing of the old place is left
    (moved,) = list_runs(Workspace(new_root))
    assert moved.workspace == str(new_root.resolve())
    assert Path(moved.work_dir) == new_root.resolve() / "work_dirs" / Path(run.work_dir).name
    assert Path(moved.config).parent == new_root.resolve()
    assert newest_checkpoint(moved.work_dir) == Path(moved.work_dir) / "iter_40.pth"
    assert moved.record_path.is_file()
