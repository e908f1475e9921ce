"""Start a training run that outlives the terminal.

``start_run`` writes the run record, then starts ``python -m engine.runs.supervise --detach
<record.json>``; that process starts a new session, forks the supervisor and exits at once, so
the supervisor belongs to no terminal and to no parent that could reap or kill it (the wizard, a
shell, an SSH session). The supervisor runs the trainer (``python -m xtuner.tools.train``, the
real exit code; ``xtuner train`` always exits 0), sends its output to the run's ``train.log``,
waits, and records the outcome. See ``supervise.py``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from engine.errors import WizardError
from engine.runs.records import RunRecord, get_run, list_runs, new_run_id
from engine.workspace import Workspace
from engine.xtuner_env import TRAIN_MODULE, module_command, python_executable

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the engine package


def work_dir_for(ws: Workspace, config_path: Path) -> Path:
    """The tutorial's layout: ``work_dirs/<config stem>``."""
    return ws.work_dirs / Path(config_path).stem


def last_checkpoint(work_dir: Path | str) -> Path | None:
    """The newest checkpoint in ``work_dir``: ``last_checkpoint`` (an absolute path mmengine
    writes) when it points at a file, else the highest ``iter_N.pth``."""
    work_dir = Path(work_dir)
    marker = work_dir / "last_checkpoint"
    try:
        named = Path(marker.read_text(encoding="utf-8").strip())
        if named.is_file():
            return named
        if (work_dir / named.name).is_file():  # the workspace was moved
            return work_dir / named.name
    except OSError:
        pass
    best: tuple[int, Path] | None = None
    for p in work_dir.glob("iter_*.pth"):
        try:
            n = int(p.stem.split("_", 1)[1])
        except (IndexError, ValueError):
            continue
        if best is None or n > best[0]:
            best = (n, p)
    return best[1] if best else None


def human_command(ws: Workspace, argv_tail: Sequence[str]) -> str:
    """The ``xtuner train ...`` a user would type for the same run (paths relative to ws)."""
    parts = ["xtuner", "train"]
    for arg in argv_tail:
        parts.append(ws.rel(arg) if os.path.isabs(arg) else arg)
    return shlex.join(parts)


def active_runs(ws: Workspace) -> list[RunRecord]:
    from engine.runs.control import refresh

    return [r for r in (refresh(r) for r in list_runs(ws)) if r.active]


def start_run(
    ws: Workspace,
    config_path: Path | str,
    *,
    resume: bool = False,
    resume_from: Path | str | None = None,
    previous_run: str | None = None,
    extra_args: Sequence[str] = (),
) -> RunRecord:
    """Start a detached training run of ``config_path``; returns its record (state starting).

    ``resume``: continue from the work dir's ``last_checkpoint`` (``--cfg-options resume=True``);
    ``resume_from``: continue from that checkpoint (``--resume PATH``).
    """
    ws.ensure()
    config = ws.path(config_path).resolve()
    if not config.is_file():
        raise WizardError(
            "config not found",
            where=str(config),
            fix="render one with `xtuner-wizard config` or pass the path of a config .py",
        )
    if config.suffix != ".py":
        raise WizardError(
            "not a Python config", where=str(config), fix="pass the config's .py file"
        )
    busy = active_runs(ws)
    if busy:
        raise WizardError(
            f"run {busy[0].id} is still training",
            fix=f"follow it with `xtuner-wizard attach {busy[0].id}` or stop it with "
            f"`xtuner-wizard stop {busy[0].id}`",
        )
    work_dir = work_dir_for(ws, config)
    tail = [str(config), "--work-dir", str(work_dir)]
    if resume_from is not None:
        tail += ["--resume", str(resume_from)]
    elif resume:
        tail += ["--cfg-options", "resume=True"]
    tail += list(extra_args)
    argv = module_command(TRAIN_MODULE, *tail)
    run_id = new_run_id(ws)
    record = RunRecord(
        id=run_id,
        workspace=str(ws.root),
        config=str(config),
        work_dir=str(work_dir),
        command=human_command(ws, tail),
        argv=argv,
        state="starting",
        started=time.time(),
        resumed_from=str(resume_from) if resume_from is not None else None,
        previous_run=previous_run,
    )
    record.save()
    record.supervisor_log_path.parent.mkdir(parents=True, exist_ok=True)
    record.pid = spawn_supervisor(record)
    return record


def spawn_supervisor(record: RunRecord) -> int:
    """Start the supervisor detached (new session, no terminal, reparented); its pid."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env["PYTHONUNBUFFERED"] = "1"
    with open(record.supervisor_log_path, "ab") as err:
        proc = subprocess.run(
            [
                python_executable(),
                "-m",
                "engine.runs.supervise",
                "--detach",
                str(record.record_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=record.workspace,
            start_new_session=True,
            timeout=60,
            check=False,
        )
    out = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not out or not out[-1].isdigit():
        raise WizardError(
            f"could not start the run's supervisor (exit {proc.returncode})",
            where=str(record.supervisor_log_path),
            fix="read that log; check that the venv's python runs",
        )
    return int(out[-1])


def resume_run(ws: Workspace, run_id: str | None = None) -> RunRecord:
    """A new run that continues ``run_id`` (default: the latest) from its last checkpoint."""
    from engine.runs.control import refresh

    old = refresh(get_run(ws, run_id))
    if old.active:
        raise WizardError(
            f"run {old.id} is still training",
            fix=f"stop it first with `xtuner-wizard stop {old.id}`",
        )
    ckpt = last_checkpoint(old.work_dir)
    if ckpt is None:
        raise WizardError(
            f"run {old.id} left no checkpoint to resume from",
            where=ws.rel(old.work_dir),
            fix="start it again with `xtuner-wizard train` (checkpoints are written every "
            "save_steps iterations; none is written on interrupt)",
        )
    return start_run(ws, old.config, resume_from=ckpt, previous_run=old.id)
