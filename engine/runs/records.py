"""Run records: ``<workspace>/.wizard/runs/<id>.json`` plus the folder ``<id>/`` (train.log).
The run trains into ``<workspace>/work_dirs/<id>/``, a folder no other run writes.

A record is written atomically. While a run is alive only its supervisor writes the record;
``stop`` leaves a marker file in the run folder instead, so there is one writer at a time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import WizardError
from engine.workspace import Workspace, atomic_write

ACTIVE_STATES = ("starting", "running")
FINAL_STATES = ("succeeded", "failed", "stopped", "killed", "lost")
STOP_MARKER = "stop-requested"
LOG_NAME = "train.log"
SUPERVISOR_LOG = "supervisor.log"


@dataclass
class RunRecord:
    id: str
    workspace: str
    config: str  # absolute path of the config trained
    work_dir: str  # <workspace>/work_dirs/<run id>: this run's own, no other run writes there
    command: str  # the equivalent `xtuner train ...` for humans
    argv: list[str] = field(default_factory=list)  # what really runs
    state: str = "starting"  # starting | running | succeeded | failed | stopped | killed | lost
    pid: int | None = None  # the supervisor
    supervisor_started: float | None = None  # its start time: a reused pid is not the run's
    trainer_pid: int | None = None
    trainer_pgid: int | None = None
    trainer_started: float | None = None
    started: float | None = None  # epoch seconds
    ended: float | None = None
    exit_code: int | None = None
    cause_kind: str | None = None
    cause: str | None = None
    fix: str | None = None
    resumed_from: str | None = None  # checkpoint path when this run resumes another
    previous_run: str | None = None  # the run it resumes
    checkpoint: str | None = None  # the newest whole checkpoint when the run ended
    checkpoints: list[str] = field(default_factory=list)  # its whole checkpoints at the end
    max_iters: int | None = None  # from the log, when the run ended
    iteration: int | None = None
    gpus: int = 1  # processes (GPUs) on this machine; >1 runs through torchrun
    deepspeed: str | None = None  # DeepSpeed stage (zero1, zero2, ...) or a .json; None: none
    env: dict[str, str] = field(default_factory=dict)  # added to the trainer's environment

    # -- paths ---------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return Path(self.workspace) / ".wizard" / "runs"

    @property
    def record_path(self) -> Path:
        return self.runs_dir / f"{self.id}.json"

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.id

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_NAME

    @property
    def supervisor_log_path(self) -> Path:
        return self.run_dir / SUPERVISOR_LOG

    @property
    def stop_marker(self) -> Path:
        return self.run_dir / STOP_MARKER

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    # -- io ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self) -> None:
        atomic_write(self.record_path, json.dumps(self.to_json(), indent=2, ensure_ascii=False))

    def try_save(self) -> bool:
        """Save if the disk lets us (a reader refreshing a record on a full disk must still
        answer, from the record in memory); False when it could not be written."""
        try:
            self.save()
            return True
        except OSError:
            return False

    @classmethod
    def load(cls, path: Path | str) -> RunRecord:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise WizardError("no such run record", where=str(path)) from exc
        except (OSError, ValueError) as exc:
            raise WizardError(
                f"unreadable run record ({exc})",
                where=str(path),
                fix="delete the file; the training output in work_dirs/ is untouched",
            ) from exc
        if not isinstance(data, dict) or "id" not in data:
            raise WizardError("not a run record", where=str(path))
        return cls.from_json(_rebased(data, path.resolve().parents[2]))

    def reload(self) -> RunRecord:
        return RunRecord.load(self.record_path)

    def describe(self) -> str:
        """One line: id, state, config, when."""
        when = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)) if self.started else "?"
        )
        text = f"{self.id}  {self.state:<9}  {Path(self.config).name}  {when}"
        if self.exit_code is not None and self.state != "succeeded":
            text += f"  exit {self.exit_code}"
        return text


def new_run_id(ws: Workspace, now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS`` (local time), with ``-2``, ``-3`` ... when taken; the run folder is
    created here (exclusively) so two starts never share an id."""
    base = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    ws.runs_dir.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        run_id = base if n == 1 else f"{base}-{n}"
        try:
            (ws.runs_dir / run_id).mkdir()
            return run_id
        except FileExistsError:
            n += 1


def list_runs(ws: Workspace) -> list[RunRecord]:
    """All runs of the workspace, oldest first (unreadable records are skipped)."""
    out = []
    try:
        paths = sorted(ws.runs_dir.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            out.append(RunRecord.load(path))
        except WizardError:
            continue
    out.sort(key=lambda r: (r.started or 0, r.id))
    return out


def get_run(ws: Workspace, run_id: str | None = None) -> RunRecord:
    """A run by id (or unique id prefix); the latest run when ``run_id`` is None."""
    runs = list_runs(ws)
    if not runs:
        raise WizardError(
            "no training runs in this workspace",
            where=str(ws.root),
            fix="start one with `xtuner-wizard train`",
        )
    if run_id is None:
        return runs[-1]
    exact = [r for r in runs if r.id == run_id]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(r.id for r in runs[-5:])
    raise WizardError(
        f"{'ambiguous' if matches else 'unknown'} run '{run_id}'",
        fix=f"use one of: {known} (see `xtuner-wizard runs`)",
    )


_PATH_FIELDS = ("config", "work_dir", "resumed_from", "checkpoint")


def _rebased(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """A record read from the workspace at ``root`` that was written in another place (the
    folder was moved or copied): its paths inside the old workspace are read inside this one,
    so the run's checkpoints are still its own (and no longer the old folder's)."""
    old = data.get("workspace")
    if not isinstance(old, str) or old == str(root):
        return data

    def moved(value: Any) -> Any:
        if isinstance(value, str) and (value == old or value.startswith(old.rstrip("/") + "/")):
            return str(root) + value[len(old.rstrip("/")) :]
        return value

    data = dict(data, workspace=str(root))
    for key in _PATH_FIELDS:
        data[key] = moved(data.get(key))
    if isinstance(data.get("checkpoints"), list):
        data["checkpoints"] = [moved(c) for c in data["checkpoints"]]
    return data
