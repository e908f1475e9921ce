"""How to run xtuner in a child process: the interpreter, the environment, the modules.

Facts behind this (see docs/notes/xtuner-on-cpu.md):
- ``xtuner`` (the entry point) always exits 0, so the wizard runs the tools as modules
  (``python -m xtuner.tools.train``) to get real exit codes.
- The entry point shells out to a plain ``python`` from PATH: the venv's bin goes first.
- No model hub here: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE.
- torch >= 2.6 loads checkpoints weights-only; mmengine's resume needs the old behaviour,
  which runs what a pickle holds: only a child resuming from the workspace's own checkpoint
  gets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (``engine.trust.unpickle_env``), not every child.
- PyPI's torchvision does not import beside the CPU torch, but xtuner.dataset imports
  torchvision.transforms; an import-only stand-in goes on PYTHONPATH when no real one exists.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

SHIMS_DIR = Path(__file__).resolve().parent / "_shims"

TRAIN_MODULE = "xtuner.tools.train"
PTH_TO_HF_MODULE = "xtuner.tools.model_converters.pth_to_hf"
MERGE_MODULE = "xtuner.tools.model_converters.merge"
CHAT_MODULE = "xtuner.tools.chat"


def python_executable() -> str:
    return sys.executable


@lru_cache(maxsize=1)
def real_torchvision_importable() -> bool:
    """Whether a real torchvision is installed (the stand-in is only needed when not)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    return not Path(spec.origin).resolve().is_relative_to(SHIMS_DIR)


def child_env(
    base: dict[str, str] | None = None, *, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment every xtuner child process needs."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(python_executable()).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # no TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD here: engine.trust.unpickle_env says who gets it
    env["PYTHONUNBUFFERED"] = "1"
    # Tutorial: MKL_SERVICE_FORCE_INTEL / MKL_THREADING_LAYER avoid an MKL/libgomp clash.
    env.setdefault("MKL_SERVICE_FORCE_INTEL", "1")
    env.setdefault("MKL_THREADING_LAYER", "GNU")
    if not real_torchvision_importable():
        parts = [str(SHIMS_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(parts)
    if extra:
        env.update(extra)
    return env


def module_command(module: str, *args: str) -> list[str]:
    return [python_executable(), "-m", module, *args]


def ensure_xtuner_importable_here() -> None:
    """Make ``import xtuner.dataset`` work in this process (puts the stand-in on sys.path)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if not real_torchvision_importable() and str(SHIMS_DIR) not in sys.path:
        sys.path.insert(0, str(SHIMS_DIR))


def xtuner_package_dir() -> Path | None:
    """Where xtuner is installed, found without importing it (importing costs seconds)."""
    spec = importlib.util.find_spec("xtuner")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])
