"""Start a training run that outlives the terminal: the one answer to "may a run start now?".

Every start (the Train pane, `train`, `resume`, run-all) goes through :func:`start_run`, which,
under one lock per workspace, refuses while another run is active, then checks what the run
will read and write before anything is created: the model folder (tokenizer included), the
dataset (the same validator as `data validate`: file:line:col), and free disk against what the
run writes (checkpoints x save_total_limit + logs). The loser of two simultaneous starts waits
for the lock, sees the winner's run and gets one line. Each run trains into a work dir of its own,
``work_dirs/<run id>``.

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

import contextlib
import errno
import fcntl
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from engine.distributed import (
    DEFAULT_PORT,
    LaunchPlan,
    train_env_and_argv,
    validate,
)
from engine.distributed import human_command as plan_command
from engine.errors import WizardError
from engine.runs.records import RunRecord, get_run, list_runs, new_run_id
from engine.workspace import Workspace
from engine.xtuner_env import python_executable

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the engine package


LOCK_NAME = "run-start.lock"
LOCK_WAIT_S = 60.0  # a start holds the lock ~1 s; waiting longer means something is stuck
LOG_BYTES = 16 << 20  # logs, eval outputs and the config copy a run writes, generously
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def work_dir_for(ws: Workspace, run_id: str) -> Path:
    """A run's own work dir: ``work_dirs/<run id>`` (no other run writes there)."""
    return ws.work_dirs / run_id


@contextlib.contextmanager
def start_lock(ws: Workspace, wait: float = LOCK_WAIT_S):
    """One start at a time per workspace (CLI, wizard and run-all alike): held around "is a
    run active? then start one", so two starts can never both see an idle workspace."""
    ws.ensure()
    path = ws.wizard_dir / LOCK_NAME
    with open(path, "a+b") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise WizardError(
                        "another start of a run in this workspace is still in progress",
                        where=str(path),
                        fix="wait a moment and look at `xtuner-wizard runs`",
                    ) from exc
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def last_checkpoint(work_dir: Path | str) -> Path | None:
    """The newest whole checkpoint in ``work_dir`` (``engine.runs.checkpoints``)."""
    from engine.runs.checkpoints import newest_checkpoint

    return newest_checkpoint(work_dir)


def _resolve_in(ws: Workspace, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else ws.root / p  # the trainer runs in the workspace


def check_model_folder(path: Path) -> None:
    """The model a config trains: a folder with config.json and a tokenizer."""
    if not path.is_dir():
        raise WizardError(
            "the config's model folder does not exist",
            where=str(path),
            fix="point pretrained_model_name_or_path at a model folder (`xtuner-wizard config "
            "--model PATH`)",
        )
    if not (path / "config.json").is_file():
        raise WizardError(
            "the config's model folder has no config.json",
            where=str(path),
            fix="use a Hugging Face model folder (`xtuner-wizard config --model PATH`)",
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise WizardError(
            "the config's model folder has no tokenizer",
            where=str(path),
            fix="copy the model's tokenizer files (tokenizer.json or tokenizer.model, "
            "tokenizer_config.json) into it",
        )


def check_dataset(path: Path) -> None:
    """The same validator as `xtuner-wizard data validate`; the first error with file:line:col."""
    from engine.data.validate import validate_file

    if not path.is_file():
        raise WizardError(
            "the config's dataset file does not exist",
            where=str(path),
            fix="write it with `xtuner-wizard data generate`, or fix the path in the config",
        )
    report = validate_file(path)
    if not report.ok:
        first = report.errors[0] if report.errors else None
        more = len(report.errors) + report.omitted_errors - 1
        extra = f" (and {more} more: `xtuner-wizard data validate {path}`)" if more > 0 else ""
        raise WizardError(
            f"the dataset is broken: {first.message if first else 'errors'}{extra}",
            where=first.where if first else str(path),
            fix=(first.fix if first and first.fix else "fix the file")
            + ", or write it again with `xtuner-wizard data generate`",
        )


def bytes_needed(model_dir: Path | None, inputs) -> int:
    """What a run writes at most: ``save_total_limit`` checkpoints plus the one being saved
    (mmengine removes the oldest after the new one is written), and logs. A LoRA checkpoint
    holds the adapter and AdamW's two moments (fp32: 12 bytes a parameter)."""
    from engine.config.estimate import model_size

    per_checkpoint = 1 << 20
    if model_dir is not None:
        try:
            size = model_size(model_dir)
            trainable = size.lora_params(inputs.lora_r) if inputs.lora_r else size.params
            per_checkpoint = max(per_checkpoint, 12 * trainable + (256 << 10))
        except Exception:  # noqa: BLE001 - an unreadable config.json is refused elsewhere
            pass
    keep = inputs.save_total_limit if inputs.save_total_limit and inputs.save_total_limit > 0 else 0
    if not keep:  # all kept: as many as the run saves, when that is known
        if inputs.max_iters and inputs.save_steps:
            keep = max(1, inputs.max_iters // inputs.save_steps)
        else:
            keep = 3
    return per_checkpoint * (keep + 1) + LOG_BYTES


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def trained_model(ws: Workspace, config: Path | str) -> Path | None:
    """The model folder a config trains (``pretrained_model_name_or_path``), None if unnamed."""
    from engine.config.api import training_inputs

    inputs = training_inputs(config)
    return _resolve_in(ws, inputs.model) if inputs.model else None


def preflight(ws: Workspace, config: Path) -> None:
    """Refuse, before anything is created, a run that cannot go well: its model folder (and
    the Python it brings, unless confirmed: the trainer runs it), its dataset, and the free
    disk for what it will write."""
    from engine.config.api import training_inputs
    from engine.trust import require_trusted

    inputs = training_inputs(config)
    model_dir = _resolve_in(ws, inputs.model) if inputs.model else None
    if model_dir is not None:
        check_model_folder(model_dir)
        require_trusted(ws, model_dir, where=f"the config's model {model_dir}")
    if inputs.data:
        check_dataset(_resolve_in(ws, inputs.data))
    needed = bytes_needed(model_dir, inputs)
    free = _free_bytes(ws.work_dirs)
    if free < needed:
        raise WizardError(
            f"not enough free disk: {_human_bytes(free)} free, the run writes up to "
            f"{_human_bytes(needed)} (checkpoints and logs)",
            where=str(ws.root),
            fix="free space there (old runs' work_dirs/*/iter_*.pth are large) or lower "
            "save_total_limit (`xtuner-wizard config --set save_total_limit=1`)",
        )


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
    resume_from: Path | str | None = None,
    previous_run: str | None = None,
    extra_args: Sequence[str] = (),
    plan: LaunchPlan | None = None,
    gpus_found: int | None = None,
) -> RunRecord:
    """Start a detached training run of ``config_path``; returns its record (state starting).

    ``resume_from``: continue from that checkpoint (``--resume PATH``, a file or a ZeRO folder;
    :func:`resume_run` picks it: a run's own folder holds no other run's checkpoint).
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
    with start_lock(ws):
        busy = active_runs(ws)
        if busy:
            raise WizardError(
                f"run {busy[0].id} is still training",
                fix=f"follow it with `xtuner-wizard attach {busy[0].id}` or stop it with "
                f"`xtuner-wizard stop {busy[0].id}`",
            )
        preflight(ws, config)
        extra: list[str] = []
        if resume_from is not None:
            extra += ["--resume", str(resume_from)]
        extra += list(extra_args)
        checked = plan is not None
        plan = plan if plan is not None else LaunchPlan(1)
        plan.config, plan.extra_args = config, tuple(extra)
        if checked:
            validate(plan, local=True, gpus_found=gpus_found)
        if resume_from is not None:
            from engine.runs.checkpoints import check_resume

            check_resume(plan, resume_from)
        if plan.distributed and plan.master_port == DEFAULT_PORT and not _port_free(DEFAULT_PORT):
            plan.master_port = _free_port()  # another job holds torch's default port
        run_id = new_run_id(ws)
        work_dir = work_dir_for(ws, run_id)
        plan.work_dir = work_dir
        env, argv = train_env_and_argv(plan)
        if resume_from is not None:  # full unpickling: the workspace's checkpoints only
            from engine.trust import unpickle_env

            env = {**env, **unpickle_env(ws, resume_from)}
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
        try:
            record.pid = spawn_supervisor(record)
        except WizardError as exc:
            record.state, record.ended = "failed", time.time()
            record.cause_kind, record.cause, record.fix = "error", exc.message, exc.fix
            record.try_save()
            raise
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
    ``NPROC_PER_NODE=2 xtuner train CFG --deepspeed deepspeed_zero2`` (the run's own
    ``--work-dir work_dirs/<run id>`` is added when it starts and its id is known)."""
    config = ws.path(config_path)
    shown = LaunchPlan(
        plan.gpus_per_node if plan else 1,
        deepspeed=plan.deepspeed if plan else None,
        config=config,
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
    from engine.runs.checkpoints import resume_point

    ckpt = resume_point(old)
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
