"""xtuner's built-in configs, found without importing xtuner (importing it costs seconds).

Mirrors ``xtuner.configs.get_cfgs_name_path``: every ``.py``/``.json`` file under
``xtuner/configs`` not starting with ``.`` or ``_``, keyed by its stem; what
``xtuner list-cfg -p`` lists and ``xtuner copy-cfg`` copies.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path

from engine.errors import WizardError
from engine.xtuner_env import xtuner_package_dir

TUTORIAL_BASE = "internlm2_chat_1_8b_qlora_alpaca_e3"


def configs_dir() -> Path:
    pkg = xtuner_package_dir()
    if pkg is None or not (pkg / "configs").is_dir():
        raise WizardError(
            "xtuner is not installed in this Python",
            where="config",
            fix="run `xtuner-wizard doctor` and install xtuner==0.2.0",
        )
    return pkg / "configs"


@lru_cache(maxsize=4)
def _mapping(root: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".json")) and not name.startswith((".", "_")):
                mapping[os.path.splitext(name)[0]] = os.path.join(dirpath, name)
    return mapping


def builtin_configs() -> dict[str, Path]:
    """Name -> path of every built-in config."""
    return {k: Path(v) for k, v in _mapping(str(configs_dir())).items()}


def list_builtin(pattern: str | None = None) -> list[str]:
    """Sorted names; ``pattern`` matches case-insensitively anywhere (like ``list-cfg -p``)."""
    names = sorted(builtin_configs())
    if pattern:
        names = [n for n in names if pattern.lower() in n.lower()]
    return names


def close_matches(word: str, candidates: list[str], n: int = 3) -> list[str]:
    found = difflib.get_close_matches(word, candidates, n=n, cutoff=0.6)
    if not found:
        found = [c for c in candidates if word.lower() in c.lower()][:n]
    return found


def builtin_path(name: str) -> Path:
    """The file of a built-in config; an unknown name names close matches."""
    configs = builtin_configs()
    if name.endswith(".py"):
        name = name[:-3]
    path = configs.get(name)
    if path is None or path.suffix != ".py":
        near = close_matches(name, [n for n, p in configs.items() if p.suffix == ".py"])
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise WizardError(
            f"unknown base config {name!r}",
            where="--base",
            fix=f"{hint}list them with `xtuner-wizard config list -p PATTERN`",
        )
    return path


def read_builtin(name: str) -> str:
    return builtin_path(name).read_text(encoding="utf-8")
