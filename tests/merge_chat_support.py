"""The golden path: one real run of the whole tutorial on the demo model, once per test process.

`xtuner-wizard run-all` (data, config, a detached `xtuner train` through the supervisor,
pth_to_hf, merge, chat), the way a user runs it. Every test that needs a trained run or a merged
model shares this one workspace and only reads it; ``merged_workspace`` merges it once more to
watch the merge's progress calls (the same checkpoint, so the same model).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.workspace import Workspace

# Under pytest-xdist (`make test` runs two workers) every test that reads the golden workspace
# runs in one worker, in order: the path is trained once and the merge pane's re-merge never
# races a chat reading merged/ in another process.
GOLDEN = pytest.mark.xdist_group("golden")

NAME = "伍鲜同志"
IDENTITY_PROMPT = "请介绍一下你自己"

_CACHE: dict[str, object] = {}


def demo_model(root: Path) -> Path:
    """The demo model, built once per test process (the first caller's ``root`` holds it)."""
    from train_support import build_model

    if "model" not in _CACHE:
        _CACHE["model"] = build_model(Path(root) / "demo-model")
    return _CACHE["model"]  # type: ignore[return-value]


def golden_workspace(base: Path) -> Workspace:
    """`xtuner-wizard run-all --name NAME` on the demo model (real training), once."""
    if "golden" in _CACHE:
        return _CACHE["golden"]  # type: ignore[return-value]
    root = Path(base) / "golden" / "ws"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(demo_model(Path(base)), root / "demo-model", dirs_exist_ok=True)
    from conftest import wizard_cli

    done = wizard_cli("--workspace", str(root), "run-all", "--name", NAME)
    assert done.returncode == 0, f"run-all failed:\n{done.stdout}\n{done.stderr}"
    ws = Workspace(root)
    ws.run_all_output = done.stdout  # type: ignore[attr-defined]
    ws.done_after_run_all = set(ws.load_state().done)  # type: ignore[attr-defined]
    _CACHE["golden"] = ws
    return ws


def trained_workspace(root: Path) -> Workspace:
    """A workspace whose latest run is a finished real training run (the golden path)."""
    return golden_workspace(Path(root).parent)


def merged_workspace(root: Path) -> tuple[Workspace, list[tuple[str, str]]]:
    """The trained workspace after convert_and_merge; also the progress calls it made."""
    if "merged" in _CACHE:
        return _CACHE["merged"]  # type: ignore[return-value]
    from engine.export import convert_and_merge

    ws = trained_workspace(root)
    calls: list[tuple[str, str]] = []
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    (ws.merged_dir / "old-marker.txt").write_text("an older merge")  # must be moved aside
    convert_and_merge(ws, progress=lambda phase, detail: calls.append((phase, detail)))
    _CACHE["merged"] = (ws, calls)
    return ws, calls
