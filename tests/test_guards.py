"""Nothing the user made is lost: every command checks first and changes nothing when it refuses."""

from __future__ import annotations

import time
from pathlib import Path

from engine.cli import main
from engine.workspace import Workspace, sha256_file


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "state.lock"
    }


def test_distributed_out_never_clobbers_a_users_file(workspace: Workspace, capsys, monkeypatch):
    monkeypatch.chdir(workspace.root)  # cfg.py and job.sh: typed in the workspace
    (workspace.root / "cfg.py").write_text("x = 1\n")
    mine = workspace.root / "job.sh"
    mine.write_text("#!/bin/bash\n# my own job script\n")
    args = ["-w", str(workspace.root), "distributed", "--gpus", "2", "--config", "cfg.py",
            "--no-gpu-check", "--slurm", "--out", "job.sh"]  # fmt: skip
    before = _tree(workspace.root)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not overwriting" in err and len(err.strip().splitlines()) == 1
    assert _tree(workspace.root) == before
    # --force replaces it, keeping a backup of the user's file
    assert main([*args, "--force"]) == 0
    backups = list(workspace.backups_dir.iterdir())
    assert len(backups) == 1 and "my own job script" in backups[0].read_text()
    assert mine.read_text().startswith("#!/bin/bash\n#SBATCH")
    # what the wizard wrote itself it may write again
    assert main(args) == 0


def test_config_model_demo_keeps_a_users_demo_model_folder(workspace: Workspace, capsys):
    workspace.data_dir.mkdir()
    workspace.dataset_path.write_text(
        '[{"conversation": [{"input": "hi", "output": "hello"}]}]', encoding="utf-8"
    )
    mine = workspace.demo_model_dir
    mine.mkdir()
    (mine / "notes.txt").write_text("my weights are elsewhere")
    before = _tree(workspace.root)
    assert main(["-w", str(workspace.root), "config", "--model", "demo", "--profile", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and len(err.strip().splitlines()) == 1
    assert _tree(workspace.root) == before


def test_demo_model_through_a_symlink_is_one_line(workspace: Workspace, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workspace.demo_model_dir.symlink_to(elsewhere)
    assert main(["-w", str(workspace.root), "demo-model"]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and len(err.strip().splitlines()) == 1
    assert list(elsewhere.iterdir()) == []


def test_run_all_while_a_run_is_active_refuses_before_writing(workspace: Workspace, capsys):
    from engine.runs.records import RunRecord, new_run_id

    run_id = new_run_id(workspace)
    RunRecord(
        id=run_id,
        workspace=str(workspace.root),
        config=str(workspace.root / "cfg.py"),
        work_dir=str(workspace.work_dirs / "cfg"),
        command="xtuner train cfg.py",
        state="starting",  # just started: its supervisor has not written its pid yet
        started=time.time(),
    ).save()
    workspace.set_choice("model", "demo")
    before = _tree(workspace.root)
    assert main(["-w", str(workspace.root), "run-all", "--name", "Ada"]) == 2
    err = capsys.readouterr().err
    assert run_id in err and len(err.strip().splitlines()) == 1
    assert _tree(workspace.root) == before
