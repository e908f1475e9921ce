"""Consent before running code the user did not write.

Two ways a fine-tune runs foreign code:

- a model folder's own Python (``auto_map`` in config.json / tokenizer_config.json, ``*.py``
  beside the weights), which transformers runs with ``trust_remote_code=True``: named here
  (files and a hash of their contents) and confirmed once per content hash; the consent is
  stored in ``state.json`` (``trusted``), so changed code asks again. The wizard's own demo
  model counts as trusted when its code is byte for byte the xtuner files it copied.
- a pickled checkpoint: ``torch.load`` without ``weights_only`` runs what the file holds.
  Only the workspace's own checkpoints (under ``work_dirs/`` or ``.wizard/runs/``) are
  loaded that way without asking; anything else needs an explicit flag.

Every loader of a folder's code asks here first (:func:`require_trusted`): ``config``,
``run-all``, ``train`` and the Train step (the run's pre-start checks), ``chat``, ``eval``,
the Data step's tokenizer; the wizard confirms in its Environment step (key ``t``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import WizardError
from engine.workspace import Workspace, sha256_file

CONFIG_FILES = ("config.json", "tokenizer_config.json")
TRUST_FLAG = "--trust-remote-code"
CHECKPOINT_FLAG = "--trust-checkpoint"
TRUST_KEY = "t"  # the Environment step's key that confirms a folder's code
FULL_UNPICKLE_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


class UntrustedCode(WizardError):
    """A model folder's Python that nobody confirmed: not run."""


class UntrustedCheckpoint(WizardError):
    """A checkpoint from outside the workspace's runs that would be unpickled: not loaded."""


@dataclass(frozen=True)
class RemoteCode:
    folder: Path
    files: tuple[str, ...]  # file names in the folder (or hub references that are not)
    digest: str  # sha256 over the names and contents

    @property
    def short(self) -> str:
        return self.digest[:12]

    def describe(self) -> str:
        return f"{', '.join(self.files)} (sha256 {self.short})"


def _auto_map_refs(folder: Path) -> set[str]:
    refs: set[str] = set()
    for name in CONFIG_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        mapping = data.get("auto_map") if isinstance(data, dict) else None
        if not isinstance(mapping, dict):
            continue
        for value in mapping.values():
            for ref in value if isinstance(value, list) else [value]:
                if not isinstance(ref, str) or "." not in ref:
                    continue
                if "--" in ref:  # code from another hub repository: not in this folder
                    refs.add(ref)
                else:
                    refs.add(ref.rsplit(".", 1)[0] + ".py")
    return refs


def remote_code(folder: Path | str) -> RemoteCode | None:
    """The Python a model folder brings (None when it brings none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    names = {p.name for p in folder.glob("*.py") if p.is_file()} | _auto_map_refs(folder)
    if not names:
        return None
    digest = hashlib.sha256()
    for name in sorted(names):
        path = folder / name
        content = sha256_file(path) if "--" not in name and path.is_file() else "missing"
        digest.update(f"{name}\0{content}\n".encode())
    return RemoteCode(folder, tuple(sorted(names)), digest.hexdigest())


def _is_wizards_demo(code: RemoteCode) -> bool:
    """The demo model's code is exactly the xtuner files the wizard copied into it."""
    from engine.demo import MARKER, REMOTE_CODE_FILES, _remote_code_source

    if not (code.folder / MARKER).is_file() or set(code.files) != set(REMOTE_CODE_FILES):
        return False
    try:
        src = _remote_code_source()
    except WizardError:
        return False
    return all(
        sha256_file(code.folder / name) == sha256_file(src / name) for name in REMOTE_CODE_FILES
    )


def is_trusted(ws: Workspace | None, folder: Path | str) -> bool:
    """True when the folder brings no code, or its code (by hash) was confirmed in ``ws``,
    or it is the wizard's own demo model (its code byte for byte xtuner's: a demo folder
    whose code was changed is not, whatever its name). Without a workspace only the last
    two count."""
    code = remote_code(folder)
    return code is None or _confirmed(ws, code)


def _confirmed(ws: Workspace | None, code: RemoteCode) -> bool:
    if ws is not None and code.digest in ws.load_state().trusted:
        return True
    return _is_wizards_demo(code)


def untrusted_code(ws: Workspace | None, folder: Path | str) -> RemoteCode | None:
    """The folder's code when there is some and it is not trusted (None: nothing to ask)."""
    code = remote_code(folder)
    return None if code is None or _confirmed(ws, code) else code


def trust(ws: Workspace, folder: Path | str, *, expected: str | None = None) -> RemoteCode | None:
    """Record consent for the folder's code as it is now (by its hash). ``expected``: the
    digest the user was shown; code that changed since is refused, not recorded."""
    code = remote_code(folder)
    if code is None:
        return None
    if expected is not None and code.digest != expected:
        raise UntrustedCode(
            f"the model folder's code changed since it was shown: now {code.describe()}",
            where=str(folder),
            fix="read the files again, then confirm again",
        )
    with ws.transaction() as state:
        state.trusted[code.digest] = {
            "folder": str(Path(folder).resolve()),
            "files": list(code.files),
            "at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    return code


def require_trusted(
    ws: Workspace | None, folder: Path | str, *, consent: bool = False, where: str | None = None
) -> RemoteCode | None:
    """Refuse (one line naming the files and the flag) a folder whose code was not
    confirmed; with ``consent`` record it. Returns the code found (None: none): a caller
    passes ``trust_remote_code=code is not None`` to transformers."""
    code = remote_code(folder)
    if code is None or _confirmed(ws, code):
        return code
    if consent and ws is not None:
        return trust(ws, folder)
    raise UntrustedCode(
        f"the model folder brings Python code that transformers would run: {code.describe()}",
        where=where or str(folder),
        fix=f"read those files; if you trust them, confirm in the wizard's Environment step "
        f"(key {TRUST_KEY}) or pass {TRUST_FLAG} (asked again if they change)",
    )


# -- checkpoints ----------------------------------------------------------------------------
def own_checkpoint(ws: Workspace, path: Path | str) -> bool:
    """True for a checkpoint the workspace's own runs wrote: under ``work_dirs/`` or
    ``.wizard/runs/`` (links resolved, so a link cannot smuggle one in)."""
    try:
        real = Path(os.path.realpath(path))
    except OSError:
        return False
    for root in (ws.work_dirs, ws.runs_dir):
        base = Path(os.path.realpath(root))
        if real != base and real.is_relative_to(base):
            return True
    return False


def unpickle_env(ws: Workspace, checkpoint: Path | str | None) -> dict[str, str]:
    """What a child that loads ``checkpoint`` needs in its environment.

    mmengine's resume unpickles non-tensor objects (HistoryBuffer, ...), which torch >= 2.6
    refuses under ``weights_only``: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` allows it. Only
    for the workspace's own checkpoints; ``{}`` for anything else (and for no checkpoint).
    """
    if checkpoint is None or not own_checkpoint(ws, checkpoint):
        return {}
    return dict(FULL_UNPICKLE_ENV)


def require_own_checkpoint(
    ws: Workspace | None, path: Path | str, *, consent: bool = False, where: str = "--checkpoint"
) -> None:
    """Refuse a checkpoint from outside the workspace's runs unless the user said so."""
    if consent or (ws is not None and own_checkpoint(ws, path)):
        return
    raise UntrustedCheckpoint(
        "is not a checkpoint of this workspace's runs; loading it runs whatever Python it "
        "holds (pickle)",
        where=f"{where} {path}",
        fix=f"use a checkpoint under work_dirs/, or pass {CHECKPOINT_FLAG} if you trust the file",
    )
