"""xtuner's built-in configs, found without importing xtuner (importing it costs seconds).

Mirrors ``xtuner.configs.get_cfgs_name_path``: every ``.py``/``.json`` file under
``xtuner/configs`` not starting with ``.`` or ``_``, keyed by its stem; what
``xtuner list-cfg -p`` lists and ``xtuner copy-cfg`` copies.
"""

from __future__ import annotations

import difflib
import os
import re
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


# --- built-in configs by model family ----------------------------------------------------------
# A model's family is its config.json ``model_type``; xtuner keeps each family's configs in one
# folder, named after the model they were written for (Qwen1.5 is transformers' ``qwen2``).
FAMILY_CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "internlm2": ("internlm", ("internlm2_",)),
    "internlm": ("internlm", ("internlm_",)),
    "internlm3": ("internlm", ("internlm3_",)),
    "qwen2": ("qwen/qwen1_5", ("qwen1_5_",)),
    "qwen": ("qwen/qwen1", ("qwen_",)),
    "qwen2_moe": ("qwen_moe", ()),
    "llama": ("llama", ("llama",)),
    "mistral": ("mistral", ()),
    "mixtral": ("mixtral", ()),
    "gemma": ("gemma", ()),
    "phi3": ("phi", ("phi3_",)),
    "chatglm": ("chatglm", ()),
    "baichuan": ("baichuan", ()),
    "deepseek_v2": ("deepseek", ("deepseek_v2",)),
    "minicpm": ("minicpm", ()),
    "cohere": ("cohere", ()),
}
# Configs the wizard can render: LoRA/QLoRA SFT on an alpaca-style dataset (the tutorial's
# kind: a process_hf_dataset it points at datas/assistant.json).
FITTING_SUFFIXES = ("_qlora_alpaca_e3", "_lora_alpaca_e3")
_SIZE = re.compile(r"_(\d+)(?:_(\d)(?=b))?b(?:_|$)")
_VERSIONED = re.compile(r"^(qwen1_5|internlm2_5)_")  # a version that looks like a size


def config_params(name: str) -> float | None:
    """The model size a config was written for, from its name (``qwen1_5_0_5b_...`` -> 0.5e9)."""
    m = _SIZE.search("_" + _VERSIONED.sub("", name))
    if m is None:
        return None
    return float(f"{m.group(1)}.{m.group(2) or 0}") * 1e9


def configs_for_family(family: str | None, params: float | None = None) -> list[str]:
    """The built-in configs that fit a model of ``family`` (``model_type``), best first: chat
    models' configs, then the one written for the nearest size. Empty for an unknown family."""
    import math

    if family not in FAMILY_CONFIGS:
        return []
    folder, prefixes = FAMILY_CONFIGS[family]
    root = configs_dir()
    base = root / folder
    found = []
    for name, path in builtin_configs().items():
        if not name.endswith(FITTING_SUFFIXES) or path.suffix != ".py":
            continue
        try:
            path.relative_to(base)
        except ValueError:
            continue
        if prefixes and not name.startswith(prefixes):
            continue
        found.append(name)

    def rank(name: str) -> tuple:
        chat = any(t in name for t in ("_chat_", "_instruct_", "_it_"))
        size = config_params(name)
        distance = (
            abs(math.log(size) - math.log(params)) if size and params and params > 0 else 99.0
        )
        return (not chat, distance, name)

    return sorted(found, key=rank)


def proposed_base(family: str | None, params: float | None = None) -> str:
    """The built-in config to start from for a model: its family's best fit, else the tutorial's."""
    fits = configs_for_family(family, params)
    return fits[0] if fits else TUTORIAL_BASE
