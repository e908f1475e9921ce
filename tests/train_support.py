"""A workspace ready to train: the demo model, the tutorial's dataset, a CPU config.

Used by the Train screen's tests and by benchmarks/wire_bytes.py (real runs, no mocks).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.workspace import Workspace

NAME = "伍鲜同志"


def prepare_workspace(
    root: Path | str,
    *,
    model_dir: Path | str | None = None,
    pairs: int = 24,
    overrides: dict[str, Any] | None = None,
) -> Workspace:
    """A workspace with a dataset (2 + 2*pairs records), a CPU config chosen, the demo model.

    ``model_dir``: an already built demo model (tests share one); built into the workspace
    when None.
    """
    from engine.config import render_config, write_config
    from engine.data.generate import dumps_dataset, generate_tutorial

    ws = Workspace(root).ensure()
    if model_dir is None:
        from engine.demo import ensure_demo_model

        model_dir = ensure_demo_model(ws)
    ws.write_user_file(ws.dataset_path, dumps_dataset(generate_tutorial(NAME, pairs)))
    ws.set_choice("data", ws.rel(ws.dataset_path))
    rendered = render_config(
        model_path=str(Path(model_dir).resolve()),
        data_path=str(ws.dataset_path.resolve()),
        profile="cpu",
        overrides=overrides,
    )
    write_config(ws, rendered)
    ws.set_choice("model", str(model_dir))
    return ws


def build_model(out_dir: Path | str) -> Path:
    from engine.demo import build_demo_model, is_complete

    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    return build_demo_model(out_dir)


def wait_for(predicate, timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def write_checkpoint(path: Path | str, size: int = 1024) -> Path:
    """A whole checkpoint file as torch.save writes one (a zip archive), without torch."""
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\0" * size)
    return path
