"""Start a training run that outlives the terminal.

``start_run`` writes the run record, then starts ``python -m engine.runs.supervise --detach
<record.json>``; that process starts a new session, forks the supervisor and exits at once, so
the supervisor belongs to no terminal and to no parent that could reap or kill it (the wizard, a
shell, an SSH session). The supervisor runs the trainer (``python -m xtuner.tools.train``, the
real exit code; ``xtuner train`` always exits 0), sends its output to the run's ``train.log``,
waits, and records the outcome. See ``supervise.py``.

Several GPUs (a ``LaunchPlan`` of ``engine.distributed``): the trainer is the torchrun line
xtuner's entry point builds for ``NPROC_PER_NODE=N xtuner train CONFIG --deepspeed STAGE``
(that command is what the record shows); the record keeps ``gpus`` and ``deepspeed`` so
``resume_run`` continues on the same ones.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from engine.distributed import (
    DEFAULT_PORT,
    LaunchPlan,
    check_resume,
    train_env_and_argv,
    validate,
)
from engine.distributed import human_command as plan_command
from engine.errors import WizardError
from engine.runs.records import RunRecord, get_run, list_runs, new_run_id
from engine.workspace import Workspace
from engine.xtuner_env import python_executable

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the engine package


def work_dir_for(ws: Workspace, config_path: Path) -> Path:
    """The tutorial's layout: ``work_dirs/<config stem>``."""
    return ws.work_dirs / Path(config_path).stem


def last_checkpoint(work_dir: Path | str) -> Path | None:
    """The newest complete checkpoint in ``work_dir``: what ``last_checkpoint`` (the absolute
    path mmengine writes) names, else the highest ``iter_N.pth``. A DeepSpeed (ZeRO) checkpoint
    is a folder ``iter_N.pth/`` and counts; an empty folder (a save cut short) does not."""
    from engine.distributed import newest_checkpoint

    return newest_checkpoint(work_dir)


def human_command(ws: Workspace, argv_tail: Sequence[str]) -> str:
    """The ``xtuner train ...`` a user would type for the same run (paths relative to ws)."""
    parts = ["xtuner", "train"]
    for arg in argv_tail:
        parts.append(ws.rel(arg) if os.path.isabs(arg) else arg)
    return shlex.join(parts)


def active_runs(ws: Workspace) -> list[RunRecord]:
    from engine.runs.control import refresh

    return [r for r in (refresh(r) for r in list_runs(ws)) if r.active]


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's TCPStore
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_run(
    ws: Workspace,
    config_path: Path | str,
    *,
    resume: bool = False,
    resume_from: Path | str | None = None,
    previous_run: str | None = None,
    extra_args: Sequence[str] = (),
    plan: LaunchPlan | None = None,
    gpus_found: int | None = None,
) -> RunRecord:
    """Start a detached training run of ``config_path``; returns its record (state starting).

    ``resume``: continue from the work dir's ``last_checkpoint`` (``--cfg-options resume=True``);
    ``resume_from``: continue from that checkpoint (``--resume PATH``, a file or a ZeRO folder).
    ``plan``: GPUs and DeepSpeed stage on this machine (its config, work dir and extra
    arguments are set here); it is validated against the GPUs here (``gpus_found`` overrides
    what NVML sees) and the installed deepspeed. Several GPUs run as xtuner's entry point runs
    them: ``python -m torch.distributed.run ... xtuner/tools/train.py ... --launcher pytorch``.
    None: one process, ``python -m xtuner.tools.train`` (no check).
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
    if plan is not None and plan.nodes != 1:
        raise WizardError(
            f"a run started here uses this machine only, not {plan.nodes} nodes",
            where="--nodes",
            fix="print each node's command (or a Slurm script) with `xtuner-wizard distributed "
            "--nodes N`",
        )
    busy = active_runs(ws)
    if busy:
        raise WizardError(
            f"run {busy[0].id} is still training",
            fix=f"follow it with `xtuner-wizard attach {busy[0].id}` or stop it with "
            f"`xtuner-wizard stop {busy[0].id}`",
        )
    work_dir = work_dir_for(ws, config)
    extra: list[str] = []
    if resume_from is not None:
        extra += ["--resume", str(resume_from)]
    elif resume:
        extra += ["--cfg-options", "resume=True"]
    extra += list(extra_args)
    checked = plan is not None
    plan = plan if plan is not None else LaunchPlan(1)
    plan.config, plan.work_dir, plan.extra_args = config, work_dir, tuple(extra)
    if checked:
        validate(plan, local=True, gpus_found=gpus_found)
    if resume_from is not None:
        check_resume(plan, resume_from)
    if plan.distributed and plan.master_port == DEFAULT_PORT and not _port_free(DEFAULT_PORT):
        plan.master_port = _free_port()  # another job holds torch's default port
    env, argv = train_env_and_argv(plan)
    if resume or resume_from is not None:  # full unpickling: only the workspace's checkpoints
        from engine.trust import unpickle_env

        env = {**env, **unpickle_env(ws, resume_from if resume_from is not None else work_dir)}
    run_id = new_run_id(ws)
    record = RunRecord(
        id=run_id,
        workspace=str(ws.root),
        config=str(config),
        work_dir=str(work_dir),
        command=plan_command(plan, rel_to=ws.root),
        argv=argv,
        state="starting",
        started=time.time(),
        resumed_from=str(resume_from) if resume_from is not None else None,
        previous_run=previous_run,
        gpus=plan.gpus_per_node,
        deepspeed=plan.deepspeed,
        env=env,
    )
    record.save()
    record.supervisor_log_path.parent.mkdir(parents=True, exist_ok=True)
    record.pid = spawn_supervisor(record)
    return record


def plan_for(gpus: int | None = None, deepspeed: str | None = None) -> LaunchPlan | None:
    """The plan for ``gpus`` processes and a DeepSpeed stage; None for one plain process."""
    if (gpus is None or gpus == 1) and deepspeed in (None, "", "none"):
        return None
    return LaunchPlan(gpus_per_node=1 if gpus is None else gpus, deepspeed=deepspeed)


def plan_from_choices(ws: Workspace) -> LaunchPlan | None:
    """The plan the Config step chose (workspace choices ``gpus`` and ``deepspeed``); None
    for one plain process. Pass it to ``start_run(..., plan=)``."""
    choices = ws.load_state().choices
    gpus = choices.get("gpus")
    stage = choices.get("deepspeed")
    return plan_for(
        gpus if isinstance(gpus, int) else None, stage if isinstance(stage, str) else None
    )


def launch_command(ws: Workspace, config_path: Path | str, plan: LaunchPlan | None = None) -> str:
    """What ``start_run`` will show for ``config_path`` under ``plan``, before it starts:
    ``NPROC_PER_NODE=2 xtuner train CFG --deepspeed deepspeed_zero2 --work-dir ...``."""
    config = ws.path(config_path)
    shown = LaunchPlan(
        plan.gpus_per_node if plan else 1,
        deepspeed=plan.deepspeed if plan else None,
        config=config,
        work_dir=work_dir_for(ws, config),
    )
    return plan_command(shown, rel_to=ws.root)


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


def resume_run(
    ws: Workspace, run_id: str | None = None, *, gpus_found: int | None = None
) -> RunRecord:
    """A new run that continues ``run_id`` (default: the latest) from its last checkpoint, on
    the same number of GPUs and DeepSpeed stage (a ZeRO checkpoint needs both)."""
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
    return start_run(
        ws,
        old.config,
        resume_from=ckpt,
        previous_run=old.id,
        plan=plan_for(old.gpus, old.deepspeed),
        gpus_found=gpus_found,
    )
