"""The workspace folder: what the user makes plus the wizard's own state in ``.wizard/``.

Everything written here goes through :func:`atomic_write`; files the wizard writes for the
user (dataset, config) are hashed so a later hand edit is noticed and never clobbered
without a backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import HandEditedError, WizardError

STEPS = ("environment", "data", "config", "train", "merge", "chat")
STATE_VERSION = 1


def atomic_write(path: Path, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode(encoding) if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class WizardState:
    current_step: str = "environment"
    done: list[str] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)  # model, profile, name, ...
    written: dict[str, str] = field(default_factory=dict)  # relpath -> sha256 when written

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WizardState:
        step = data.get("current_step", "environment")
        return cls(
            current_step=step if step in STEPS else "environment",
            done=[s for s in data.get("done", []) if s in STEPS],
            choices=dict(data.get("choices", {})),
            written=dict(data.get("written", {})),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "current_step": self.current_step,
            "done": self.done,
            "choices": self.choices,
            "written": self.written,
        }


class Workspace:
    """A folder holding the user's dataset, config, runs, adapter and merged model."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()

    # -- layout ------------------------------------------------------------------------
    @property
    def wizard_dir(self) -> Path:
        return self.root / ".wizard"

    @property
    def state_path(self) -> Path:
        return self.wizard_dir / "state.json"

    @property
    def runs_dir(self) -> Path:
        return self.wizard_dir / "runs"

    @property
    def backups_dir(self) -> Path:
        return self.wizard_dir / "backups"

    @property
    def data_dir(self) -> Path:
        return self.root / "datas"

    @property
    def dataset_path(self) -> Path:
        return self.data_dir / "assistant.json"

    @property
    def heldout_path(self) -> Path:
        return self.data_dir / "heldout.json"

    @property
    def work_dirs(self) -> Path:
        return self.root / "work_dirs"

    @property
    def hf_dir(self) -> Path:
        return self.root / "hf"

    @property
    def merged_dir(self) -> Path:
        return self.root / "merged"

    @property
    def demo_model_dir(self) -> Path:
        return self.root / "demo-model"

    def path(self, relpath: str | Path) -> Path:
        p = Path(relpath)
        return p if p.is_absolute() else self.root / p

    def rel(self, path: Path | str) -> str:
        p = Path(path).resolve()
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def ensure(self) -> Workspace:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.wizard_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise WizardError(
                f"cannot create the workspace: {exc.strerror}",
                where=str(self.root),
                fix="pick a folder you can write to with --workspace DIR",
            ) from exc
        return self

    # -- state -------------------------------------------------------------------------
    def load_state(self) -> WizardState:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return WizardState()
        except (OSError, ValueError):
            # A broken state file must not lock the user out: keep it aside and start clean.
            self.backup(self.state_path)
            return WizardState()
        return WizardState.from_json(data if isinstance(data, dict) else {})

    def save_state(self, state: WizardState) -> None:
        self.ensure()
        atomic_write(self.state_path, json.dumps(state.to_json(), indent=2, ensure_ascii=False))

    def update_state(self, **changes: Any) -> WizardState:
        state = self.load_state()
        for key, value in changes.items():
            setattr(state, key, value)
        self.save_state(state)
        return state

    def mark_done(self, step: str, done: bool = True) -> WizardState:
        state = self.load_state()
        if done and step not in state.done:
            state.done.append(step)
        if not done and step in state.done:
            state.done.remove(step)
        self.save_state(state)
        return state

    def set_choice(self, key: str, value: Any) -> WizardState:
        state = self.load_state()
        state.choices[key] = value
        self.save_state(state)
        return state

    # -- user files: hashed when written, backed up before replacing ---------------------
    def is_hand_edited(self, path: Path) -> bool:
        """True when ``path`` exists and is not byte-for-byte what the wizard last wrote."""
        path = self.path(path)
        if not path.exists():
            return False
        recorded = self.load_state().written.get(self.rel(path))
        return recorded is None or recorded != sha256_file(path)

    def backup(self, path: Path) -> Path | None:
        path = self.path(path)
        if not path.exists():
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.backups_dir / f"{self.rel(path).replace(os.sep, '__')}.{stamp}"
        n = 1
        while dest.exists():
            dest = dest.with_name(f"{dest.name}.{n}")
            n += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        return dest

    def write_user_file(
        self, path: Path | str, data: bytes | str, *, force: bool = False
    ) -> Path | None:
        """Write a file the user owns (dataset, config). Returns the backup made, if any.

        A file changed by hand since the wizard wrote it raises :class:`HandEditedError`
        unless ``force``; with ``force`` (the user confirmed) it is backed up first.
        """
        path = self.path(path)
        backup = None
        if path.exists():
            if self.is_hand_edited(path) and not force:
                raise HandEditedError(
                    "was changed by hand since the wizard wrote it; not overwriting",
                    where=str(path),
                    fix="confirm to replace it (a backup is kept in .wizard/backups), or use --force",
                )
            backup = self.backup(path) if self.is_hand_edited(path) else None
        atomic_write(path, data)
        state = self.load_state()
        state.written[self.rel(path)] = sha256_file(path)
        self.save_state(state)
        return backup
