"""What the workspace is working on: the model, the dataset, the config, the merged model.

One resolution rule for all of them, used by the CLI, the wizard and run-all:

- a path the user types is resolved when it is given: ``~`` expanded, a relative path taken
  from the caller's current folder (the shell's, on the command line), then made absolute;
- it is checked on entry (a model folder must exist and hold config.json and a tokenizer),
  so a bad choice is refused with one line before anything is written;
- it is stored absolute (``"demo"``, ``"demo-qwen2"`` for the workspace's demo models). Paths stored
  relative by older versions, or by the wizard for files inside the workspace, are read
  relative to the workspace, never to whatever folder the reader runs in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import WizardError
from engine.workspace import WizardState, Workspace

DEMO = "demo"
# Any one of these makes a tokenizer (fast, sentencepiece, BPE, WordPiece, tiktoken).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "qwen.tiktoken")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def absolute(value: str | Path, *, cwd: str | Path | None = None) -> Path:
    """``value`` as an absolute path: ``~`` expanded, relative to ``cwd`` (default: the
    process's current folder), ``..`` folded. Symlinks are kept (the user's name for it)."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = Path(cwd if cwd is not None else os.getcwd()) / path
    return Path(os.path.normpath(path))


def stored(ws: Workspace, value: str | Path) -> Path:
    """A path read back from the workspace's state: relative ones are inside the workspace."""
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else Path(os.path.normpath(ws.root / path))


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    is_demo: bool
    demo: str = DEMO  # which demo (``demo``, ``demo-qwen2``) when ``is_demo``

    @property
    def value(self) -> str:
        """What ``state.json`` records: the demo's name or the absolute folder."""
        return self.demo if self.is_demo else str(self.path)


def _demo(ws: Workspace, value: object) -> ModelChoice | None:
    """The choice for a demo name (``demo``, ``demo-qwen2``), None for anything else."""
    from engine.demo import choice_dir

    folder = choice_dir(ws, value)
    return ModelChoice(folder, True, str(value)) if folder is not None else None


def check_model_folder(path: Path, *, where: str | None = None, weights: bool = False) -> Path:
    """Refuse (one line) a folder that is not a model: missing, no config.json, no tokenizer,
    and with ``weights`` no weight files. Returns ``path``."""
    where = where or str(path)
    if not path.exists():
        raise WizardError(
            f"model folder not found: {path}",
            where=where,
            fix="pass the folder holding config.json, the tokenizer and the weights, or demo",
        )
    if not path.is_dir():
        raise WizardError(
            f"not a folder: {path}",
            where=where,
            fix="pass the model's folder, not a file in it",
        )
    cfg = path / "config.json"
    if not cfg.is_file():
        raise WizardError(
            f"not a model folder (no config.json): {path}",
            where=where,
            fix="pass the folder holding config.json and the weights (e.g. internlm2-chat-1_8b)",
        )
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise WizardError(
            f"{cfg} is not readable JSON ({type(exc).__name__})",
            where=where,
            fix="re-download the model's config.json",
        ) from exc
    if not isinstance(data, dict):
        raise WizardError(f"{cfg} is not a JSON object", where=where, fix="re-download config.json")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise WizardError(
            f"no tokenizer in the model folder ({', '.join(TOKENIZER_FILES)}): {path}",
            where=where,
            fix="download the model's tokenizer files into the same folder",
        )
    if weights and not any(next(path.glob(p), None) for p in WEIGHT_PATTERNS):
        raise WizardError(
            f"no weights in the model folder (*.safetensors or *.bin): {path}",
            where=where,
            fix="download the whole model, or point --model at the folder that has them",
        )
    return path


def model_choice(
    ws: Workspace,
    value: str | Path | None = None,
    *,
    cwd: str | Path | None = None,
    check: bool = True,
    weights: bool = False,
    where: str = "--model",
) -> ModelChoice | None:
    """The model: ``value`` (typed by the user; ``"demo"`` or a path) or, when None, the
    workspace's recorded choice. None when neither is there.

    A typed path is checked (``check``): a bad one raises :class:`WizardError` before the
    caller writes anything. The demo model is not checked here: it is built on demand
    (:func:`ensure_model`).
    """
    if value is None or str(value) == "":
        recorded = ws.load_state().choices.get("model")
        if recorded in (None, ""):
            return None
        return _demo(ws, recorded) or ModelChoice(stored(ws, recorded), False)
    demo = _demo(ws, str(value))
    if demo is not None:
        return demo
    path = absolute(value, cwd=cwd)
    if check:
        check_model_folder(path, where=where, weights=weights)
    return ModelChoice(path, False)


def require_model(ws: Workspace, value: str | Path | None = None, **kw) -> ModelChoice:
    """:func:`model_choice`, refusing (one line) when no model is given or recorded."""
    choice = model_choice(ws, value, **kw)
    if choice is None:
        raise WizardError(
            "no model chosen",
            where=kw.get("where", "--model"),
            fix="pass --model PATH (the folder with config.json, tokenizer and weights) or --model demo",
        )
    return choice


def ensure_model(ws: Workspace, choice: ModelChoice) -> Path:
    """The model's folder, the demo model built first when it is the choice."""
    if choice.is_demo:
        from engine.demo import demo_arch, ensure_demo_model

        return ensure_demo_model(ws, arch=demo_arch(choice.demo) or "internlm2")
    return choice.path


def record_model(ws: Workspace, choice: ModelChoice) -> None:
    """Store the choice (absolute, or ``"demo"``) in ``state.json``."""
    ws.set_choice("model", choice.value)


def model_family(ws: Workspace, value: object) -> str | None:
    """The family (config.json's ``model_type``) of a stored model choice: a demo name or a
    folder; None when it can't be read."""
    from engine.demo import demo_arch

    if not isinstance(value, str) or not value:
        return None
    arch = demo_arch(value)
    if arch is not None:
        return arch
    try:
        cfg = json.loads((stored(ws, value) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    family = cfg.get("model_type") if isinstance(cfg, dict) else None
    return family if isinstance(family, str) and family else None


def base_is_stale(ws: Workspace, base: str, before: object, after: object) -> bool:
    """Whether the built-in config ``base``, chosen while the model was ``before``, is wrong
    for the model ``after``: the family changed and ``base`` is none of the new family's
    configs (when xtuner's configs can't be listed: the family changed). A base kept on
    purpose across models of one family, or a model whose family can't be read, keeps it."""
    from engine.config.builtin import configs_for_family

    new = model_family(ws, after)
    if new is None or model_family(ws, before) == new:
        return False
    try:
        return base not in configs_for_family(new)
    except WizardError:
        return True


def set_model(ws: Workspace, value: str) -> WizardState:
    """Record the model choice: the one place it is written (``Workspace.set_choice("model")``
    comes here). A ``config_base`` chosen for another family is dropped with it, so the
    Config step proposes the new family's configs instead of an InternLM2 base for a Qwen2."""
    with ws.transaction() as state:
        before = state.choices.get("model")
        state.choices["model"] = value
        base = state.choices.get("config_base")
        if isinstance(base, str) and base and before != value:
            if base_is_stale(ws, base, before, value):
                del state.choices["config_base"]
    return state


def model_dir(ws: Workspace) -> Path | None:
    """The recorded model's folder (not checked, not built): for a base model to read."""
    choice = model_choice(ws)
    return choice.path if choice is not None else None


def dataset_path(
    ws: Workspace, value: str | Path | None = None, *, cwd: str | Path | None = None
) -> Path:
    """The dataset: ``value`` (typed; relative to ``cwd``), else the one the Data step or
    ``data generate`` recorded, else ``datas/assistant.json``. Not checked here: callers
    validate it (:func:`engine.data.validate.validate_file`)."""
    if value is not None and str(value) != "":
        return absolute(value, cwd=cwd)
    recorded = ws.load_state().choices.get("data")
    return stored(ws, recorded) if recorded else ws.dataset_path
