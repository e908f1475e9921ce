"""The workspace folder: what the user makes plus the wizard's own state in ``.wizard/``.

Everything written here goes through :func:`atomic_write`; files the wizard writes for the
user (dataset, config) are hashed so a later hand edit is noticed and never clobbered
without a backup.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import HandEditedError, WizardError, WriteFailed

STEPS = ("environment", "data", "config", "train", "merge", "chat")
STATE_VERSION = 1


# Write failures the user fixes (not the wizard): each becomes one line with its fix.
WRITE_FIXES = {
    errno.ENOSPC: ("the disk is full", "free some space on this disk, or pick another --workspace"),
    errno.EDQUOT: ("the disk quota is used up", "free some space, or pick another --workspace"),
    errno.EROFS: ("the folder is on a read-only file system", "pick a writable --workspace"),
    errno.EACCES: ("permission denied", "check its permissions, or pick another folder"),
    errno.EPERM: ("permission denied", "check its permissions, or pick another folder"),
}


def write_error(exc: OSError, path: Path | str, *, writing: bool = True) -> OSError:
    """``exc`` as a one-line :class:`WriteFailed` when the user can fix it, else ``exc``."""
    if isinstance(exc, WizardError) or exc.errno not in WRITE_FIXES:
        return exc
    what, fix = WRITE_FIXES[exc.errno]
    err = WriteFailed(f"cannot write: {what}" if writing else what, where=str(path), fix=fix)
    err.errno = exc.errno
    return err


def atomic_write(path: Path, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half of one.

    A full disk, a read-only file system or a missing permission raises :class:`WriteFailed`
    (a :class:`WizardError` and an ``OSError``): one line with the fix, the old file intact.
    """
    path = Path(path)
    raw = data.encode(encoding) if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(exc, path) from exc
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_LOCKS_HELD = threading.local()  # per thread: workspace root -> lock depth


@dataclass
class WizardState:
    current_step: str = "environment"
    done: list[str] = field(default_factory=list)
    choices: dict[str, Any] = field(default_factory=dict)  # model, profile, name, ...
    written: dict[str, str] = field(default_factory=dict)  # relpath -> sha256 when written
    trusted: dict[str, Any] = field(default_factory=dict)  # code sha256 -> what was confirmed

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WizardState:
        step = data.get("current_step", "environment")
        return cls(
            current_step=step if step in STEPS else "environment",
            done=[s for s in data.get("done", []) if s in STEPS],
            choices=dict(data.get("choices", {})),
            written=dict(data.get("written", {})),
            trusted=dict(data.get("trusted", {})),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "current_step": self.current_step,
            "done": self.done,
            "choices": self.choices,
            "written": self.written,
            "trusted": self.trusted,
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
        except (OSError, ValueError, RecursionError):
            # A broken state file (nested too deeply for the parser, too) must not lock the
            # user out: keep it aside and start clean.
            self.backup(self.state_path)
            return WizardState()
        return WizardState.from_json(data if isinstance(data, dict) else {})

    def save_state(self, state: WizardState) -> None:
        self.ensure()
        atomic_write(self.state_path, json.dumps(state.to_json(), indent=2, ensure_ascii=False))

    @property
    def lock_path(self) -> Path:
        return self.wizard_dir / "state.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the workspace's state lock (``fcntl.flock`` on ``.wizard/state.lock``).

        Every read-modify-write of ``state.json`` happens inside it, so writers in other
        processes or threads never lose each other's updates. Re-entrant within a thread.
        """
        held = _LOCKS_HELD.__dict__.setdefault("roots", {})
        key = str(self.root)
        if held.get(key):
            held[key] += 1
            try:
                yield
            finally:
                held[key] -= 1
            return
        self.ensure()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(exc, self.lock_path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held[key] = 1
            try:
                yield
            finally:
                held[key] = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[WizardState]:
        """The state, read under the lock; saved when the block ends without an error.

        A transaction inside another (same thread, same workspace) shares its state object,
        so the outer save keeps the inner changes.
        """
        open_states = _LOCKS_HELD.__dict__.setdefault("states", {})
        key = str(self.root)
        if key in open_states:
            yield open_states[key]
            return
        with self.locked():
            state = self.load_state()
            open_states[key] = state
            try:
                yield state
            finally:
                del open_states[key]
            self.save_state(state)

    def update_state(self, **changes: Any) -> WizardState:
        with self.transaction() as state:
            for key, value in changes.items():
                setattr(state, key, value)
        return state

    def mark_done(self, step: str, done: bool = True) -> WizardState:
        with self.transaction() as state:
            if done and step not in state.done:
                state.done.append(step)
            if not done and step in state.done:
                state.done.remove(step)
        return state

    def set_choice(self, key: str, value: Any) -> WizardState:
        if key == "model":  # a new model may make the chosen config base another family's
            from engine.selection import set_model

            return set_model(self, value)
        with self.transaction() as state:
            state.choices[key] = value
        return state

    def record_written(self, path: Path | str) -> None:
        """Remember the hash of a file the wizard just wrote for the user."""
        path = self.path(path)
        with self.transaction() as state:
            state.written[self.rel(path)] = sha256_file(path)

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

    def check_user_file(self, path: Path | str, *, force: bool = False) -> bool:
        """Refuse (:class:`HandEditedError`) to replace a hand-edited file unless ``force``.

        Returns True when the file exists and was edited by hand (so replacing it needs a
        backup). Commands call it for every file they will write before writing any.
        """
        path = self.path(path)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise WizardError(
                "is not a regular file (a folder or a link); not writing over it",
                where=str(path),
                fix="remove it or pick another path",
            )
        edited = self.is_hand_edited(path)
        if edited and not force:
            raise HandEditedError(
                "was changed by hand since the wizard wrote it; not overwriting",
                where=str(path),
                fix="confirm to replace it (a backup is kept in .wizard/backups), or use --force",
            )
        return edited

    def write_user_file(
        self, path: Path | str, data: bytes | str, *, force: bool = False
    ) -> Path | None:
        """Write a file the user owns (dataset, config). Returns the backup made, if any.

        A file changed by hand since the wizard wrote it raises :class:`HandEditedError`
        unless ``force``; with ``force`` (the user confirmed) it is backed up first. The
        check, the write and the recorded hash happen under the state lock.
        """
        path = self.path(path)
        with self.locked():
            backup = self.backup(path) if self.check_user_file(path, force=force) else None
            atomic_write(path, data)
            self.record_written(path)
        return backup
