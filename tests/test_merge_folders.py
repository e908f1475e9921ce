"""Merged models are published whole: staged beside merged/, renamed in when complete; a killed
merge leaves merged/ as it was; earlier models are kept (one as merged.previous) until pruned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.cli import main
from engine.export import (
    INFO_FILE,
    is_complete_merge,
    latest_merged,
    mark_complete,
    previous_merges,
    prune_previous,
    publish,
    staging_dir,
)
from engine.workspace import Workspace, sha256_file


def _model(folder: Path, tag: str, *, complete: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "internlm2", "tag": tag}))
    (folder / "model.safetensors").write_bytes(tag.encode() * 1000)
    if complete:
        mark_complete(folder, {"load_check": {"parameters": 1}})
    return folder


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


# A merge's folder handling in a child process, killed (SIGKILL) while it writes the new model.
CHILD = r"""
import sys
from pathlib import Path
from engine.export import staging_dir
out = Path(sys.argv[1])
stage = staging_dir(out)
(stage / "config.json").write_text("{}")
with open(stage / "model-00001-of-00002.safetensors", "wb") as fh:
    fh.write(b"x" * 4096)
    fh.flush()
    print(stage, flush=True)   # half-written: now kill me
    sys.stdin.read()
"""


def test_killed_merge_leaves_merged_as_it_was(workspace: Workspace):
    good = _model(workspace.merged_dir, "good")
    workspace.set_choice("merged", "merged")
    before = _hashes(good)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(good)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    stage = Path(child.stdout.readline().strip())  # waits for the child to be mid-write
    assert stage.is_dir() and stage.parent == workspace.root
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert _hashes(good) == before
    assert latest_merged(workspace) == good  # chat's default: the complete model
    assert not is_complete_merge(stage)
    # the next merge clears what the killed one left (its process is gone)
    fresh = staging_dir(good)
    assert not stage.exists() and fresh.is_dir()


def test_half_written_merged_is_never_picked(workspace: Workspace):
    _model(workspace.merged_dir, "half", complete=False)
    assert latest_merged(workspace) is None
    assert main(["-w", str(workspace.root), "chat", "--prompt", "hi"]) == 2


def test_publish_keeps_one_previous_and_prunes_only_when_asked(workspace: Workspace):
    out = workspace.merged_dir
    _model(out, "one")
    for tag in ("two", "three"):
        stage = staging_dir(out)
        _model(stage, tag)
        publish(stage, out)
    tags = [
        json.loads((p / "config.json").read_text())["tag"] for p in [out, *previous_merges(out)]
    ]
    assert tags == ["three", "two", "one"]
    assert (out.parent / "merged.previous" / INFO_FILE).is_file()
    oldest = previous_merges(out)[-1]
    size = sum(f.stat().st_size for f in oldest.iterdir())
    assert prune_previous(out, 1) == [(oldest, size)]
    assert [p.name for p in previous_merges(out)] == ["merged.previous"]
    assert json.loads((out / "config.json").read_text())["tag"] == "three"


def test_merge_out_refuses_the_workspace_its_parents_and_a_users_folder(
    workspace, capsys, monkeypatch
):
    mine = workspace.root / "photos"
    mine.mkdir()
    (mine / "a.jpg").write_bytes(b"jpg")
    before = workspace.state_path.read_bytes() if workspace.state_path.exists() else None
    # --out is relative to the folder it is typed in (the workspace's parent here), as every
    # path the user gives; `/` once raised a ValueError (no name for "<out>-adapter")
    monkeypatch.chdir(workspace.root.parent)
    ws_name = workspace.root.name
    for out, words in (
        (ws_name, "the workspace"),
        (".", "above it"),
        ("/", "above it"),
        (f"{ws_name}/photos", "not empty"),
    ):
        assert main(["-w", str(workspace.root), "merge", "--out", out]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, (out, err)
    assert (mine / "a.jpg").read_bytes() == b"jpg"
    after = workspace.state_path.read_bytes() if workspace.state_path.exists() else None
    assert after == before
