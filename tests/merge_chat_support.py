"""A trained and merged demo workspace, built once per test process (real xtuner, no mocks).

The demo model, the tutorial's dataset and a CPU config (tests/train_support.py), then
``python -m xtuner.tools.train`` run directly (48 iterations: the demo model answers with the
identity after ~32), then engine.export.convert_and_merge. Used by the merge, chat and eval
tests; the lead may hoist it into a shared ``trained_run`` fixture.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from engine.workspace import Workspace

NAME = "伍鲜同志"
IDENTITY_PROMPT = "请介绍一下你自己"
TRAIN_ITERS = 48

_CACHE: dict[str, object] = {}


def demo_model(root: Path) -> Path:
    from train_support import build_model

    if "model" not in _CACHE:
        _CACHE["model"] = build_model(root / "demo-model")
    return _CACHE["model"]  # type: ignore[return-value]


def trained_workspace(root: Path) -> Workspace:
    """A workspace whose latest run record points at a finished real training run."""
    if "trained" in _CACHE:
        return _CACHE["trained"]  # type: ignore[return-value]
    from train_support import prepare_workspace

    from engine.data.generate import IdentityFacts, tutorial_heldout
    from engine.runs.records import RunRecord, new_run_id
    from engine.workspace import atomic_write
    from engine.xtuner_env import TRAIN_MODULE, child_env, module_command

    model = demo_model(root)
    ws = prepare_workspace(root / "ws", model_dir=model, overrides={"max_iters": TRAIN_ITERS})
    ws.set_choice("name", NAME)
    atomic_write(
        ws.heldout_path,
        json.dumps(tutorial_heldout(IdentityFacts(name=NAME)), ensure_ascii=False, indent=2),
    )
    cfg = ws.path(ws.load_state().choices["config"])
    work_dir = ws.work_dirs / cfg.stem
    argv = module_command(TRAIN_MODULE, str(cfg), "--work-dir", str(work_dir), "--seed", "0")
    run_id = new_run_id(ws)
    log = ws.runs_dir / run_id / "train.log"
    started = time.time()
    with open(log, "w") as fh:
        proc = subprocess.run(
            argv, cwd=ws.root, env=child_env(), stdout=fh, stderr=subprocess.STDOUT
        )
    assert proc.returncode == 0, log.read_text()[-3000:]
    record = RunRecord(
        id=run_id,
        workspace=str(ws.root),
        config=str(cfg),
        work_dir=str(work_dir),
        command=f"xtuner train {cfg.name}",
        argv=argv,
        state="succeeded",
        started=started,
        ended=time.time(),
        exit_code=0,
    )
    record.save()
    _CACHE["trained"] = ws
    return ws


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
