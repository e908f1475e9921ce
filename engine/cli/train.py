"""``train``, ``runs``, ``attach``, ``stop``, ``resume``: detached training runs.

Training never depends on the terminal: ``train`` starts a supervisor in its own session and
returns; ``attach`` only reads the files the run writes, and Ctrl-C there detaches.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time


def register(sub, parent) -> None:
    p = sub.add_parser(
        "train",
        parents=[parent],
        help="start a detached training run (prints its id)",
        description="Start `xtuner train CONFIG` in the background, detached from this terminal: "
        "closing the terminal or the SSH link does not stop it. Without CONFIG, the workspace's "
        "config (the one `xtuner-wizard config` wrote) is trained.",
    )
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        metavar="CONFIG",
        help="config .py to train, relative to the current folder (default: the workspace's)",
    )
    p.add_argument(
        "--gpus",
        type=int,
        default=None,
        metavar="N",
        help="GPUs on this machine (default: the Config step's choice, else 1); more than one "
        "runs `NPROC_PER_NODE=N xtuner train` (torchrun)",
    )
    p.add_argument(
        "--deepspeed",
        default=None,
        metavar="STAGE",
        help="DeepSpeed ZeRO stage: zero1, zero2, zero2_offload, zero3, zero3_offload, a "
        "DeepSpeed .json, or none (default: the Config step's choice, else none)",
    )
    p.add_argument("--wait", action="store_true", help="follow the run until it ends (like attach)")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code the config's model folder brings (auto_map, *.py); asked "
        "once per version of that code",
    )
    p.set_defaults(func=handle_train)

    p = sub.add_parser("runs", parents=[parent], help="list the workspace's training runs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=handle_runs)

    p = sub.add_parser(
        "attach",
        parents=[parent],
        help="follow a run: progress, loss, ETA, evaluation answers (Ctrl-C detaches)",
    )
    p.add_argument("run", nargs="?", default=None, metavar="RUN", help="run id (default: latest)")
    p.set_defaults(func=handle_attach)

    p = sub.add_parser(
        "stop",
        parents=[parent],
        help="stop a run and every process of it (SIGINT, escalating); no checkpoint is written",
    )
    p.add_argument("run", nargs="?", default=None, metavar="RUN", help="run id (default: latest)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before escalating")
    p.set_defaults(func=handle_stop)

    p = sub.add_parser(
        "resume", parents=[parent], help="continue a run from its last checkpoint (a new run)"
    )
    p.add_argument("run", nargs="?", default=None, metavar="RUN", help="run id (default: latest)")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code the config's model folder brings (auto_map, *.py); asked "
        "once per version of that code",
    )
    p.set_defaults(func=handle_resume)


# -- train / resume ------------------------------------------------------------------------
def _consent(ws, config, args: argparse.Namespace) -> None:
    """``--trust-remote-code``: record consent for the code of the model the config trains
    (the run's pre-start checks refuse it unconfirmed)."""
    if not args.trust_remote_code or not ws.path(config).is_file():
        return
    from engine.runs.launch import trained_model
    from engine.trust import require_trusted

    model = trained_model(ws, ws.path(config))
    if model is not None and model.is_dir():
        require_trusted(ws, model, consent=True)


def _started(record, ws, wait: bool) -> int:
    print(f"run {record.id} started (supervisor pid {record.pid})")
    print(f"  command: {record.command}")
    print(f"  log:     {ws.rel(record.log_path)}")
    if not wait:
        print(
            f"  follow it with `xtuner-wizard attach {record.id}`; stop it with "
            f"`xtuner-wizard stop {record.id}`"
        )
        return 0
    return follow(ws, record.id)


def handle_train(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.errors import WizardError
    from engine.runs.launch import launch_command, plan_for, plan_from_choices, start_run
    from engine.selection import absolute

    ws = workspace_of(args)
    # typed: from the current folder (engine.selection); recorded: inside the workspace
    config = str(absolute(args.config)) if args.config else ws.load_state().choices.get("config")
    if not config:
        raise WizardError(
            "no config to train",
            where=str(ws.root),
            fix="render one with `xtuner-wizard config --model PATH --data PATH`, or pass CONFIG",
        )
    plan = plan_from_choices(ws)  # the Config step's choice; the flags override it
    if args.gpus is not None or args.deepspeed is not None:
        plan = plan_for(
            args.gpus if args.gpus is not None else (plan.gpus_per_node if plan else None),
            args.deepspeed if args.deepspeed is not None else (plan.deepspeed if plan else None),
        )
    if plan is not None:
        from engine.distributed import LaunchPlan, validate

        # checked here first (GPUs, deepspeed), then shown before anything starts
        shown = LaunchPlan(plan.gpus_per_node, deepspeed=plan.deepspeed, config=ws.path(config))
        if ws.path(config).is_file():
            try:
                validate(shown, local=True)
            except WizardError as exc:
                if exc.where == "--gpus" and exc.fix and "; to only print" in exc.fix:
                    exc.fix = (
                        exc.fix.split("; to only print")[0] + "; for another machine's "
                        "command use `xtuner-wizard distributed --gpus N --no-gpu-check`"
                    )
                raise
            print(f"starting: {launch_command(ws, config, shown)}", flush=True)
    _consent(ws, config, args)
    record = start_run(ws, config, plan=plan)
    for note in plan.notes if plan is not None else ():
        print(f"note: {note}")
    return _started(record, ws, args.wait)


def handle_resume(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.runs.launch import resume_run

    ws = workspace_of(args)
    if args.trust_remote_code:
        from engine.runs.records import get_run

        _consent(ws, get_run(ws, args.run).config, args)
    record = resume_run(ws, args.run)
    on = f" on {record.gpus} GPUs" if record.gpus > 1 else ""
    on += f" with DeepSpeed {record.deepspeed}" if record.deepspeed else ""
    print(f"resuming run {record.previous_run}{on} from {ws.rel(record.resumed_from or '')}")
    return _started(record, ws, args.wait)


# -- runs ----------------------------------------------------------------------------------
def handle_runs(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.runs.control import refresh
    from engine.runs.records import list_runs

    ws = workspace_of(args)
    runs = [refresh(r) for r in list_runs(ws)]
    if args.json:
        print(json.dumps([r.to_json() for r in runs], indent=2, ensure_ascii=False))
        return 0
    if not runs:
        print("no training runs yet (start one with `xtuner-wizard train`)")
        return 0
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)) if r.started else "?"
        progress = ""
        if r.iteration is not None and r.max_iters:
            progress = f"{r.iteration}/{r.max_iters}"
        elif r.active:
            from engine.runs.monitor import RunMonitor

            snap = RunMonitor.for_record(r).poll()  # its own folder (and the runs it resumes)
            if snap.max_iters:
                progress = f"{snap.iteration}/{snap.max_iters}"
        line = f"{r.id:<18} {r.state:<9} {progress:>9}  {when}  {ws.rel(r.config)}"
        if r.exit_code not in (None, 0):
            line += f"  exit {r.exit_code}"
        if r.resumed_from:
            line += f"  (resumes {r.previous_run})"
        print(line)
        if r.cause and r.state != "succeeded":
            print(f"    cause: {r.cause}")
            if r.fix:
                print(f"    fix:   {r.fix}")
    return 0


# -- stop ----------------------------------------------------------------------------------
def handle_stop(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.runs.control import stop_run

    ws = workspace_of(args)
    print("stopping (no checkpoint is written on interrupt: work since the last one is lost) ...")
    record = stop_run(ws, args.run, timeout=args.timeout)
    print(f"run {record.id}: {record.state}")
    if record.checkpoint:
        print(f"  last checkpoint: {ws.rel(record.checkpoint)} (`xtuner-wizard resume` continues)")
    return 0


# -- attach --------------------------------------------------------------------------------
def handle_attach(args: argparse.Namespace) -> int:
    from engine.cli import workspace_of
    from engine.runs.records import get_run

    ws = workspace_of(args)
    record = get_run(ws, args.run)
    return follow(ws, record.id)


def _fmt_eta(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def status_line(snap) -> str:
    """``[12/96] 12%  loss 0.0423  lr 1.07e-03  eta 0:00:07  training``"""
    parts = []
    if snap.max_iters:
        parts.append(
            f"[{snap.iteration}/{snap.max_iters}] {100 * snap.iteration // snap.max_iters}%"
        )
    else:
        parts.append(f"[{snap.iteration}/?]")
    if snap.epoch and snap.max_epochs:
        parts.append(f"epoch {snap.epoch}/{snap.max_epochs}")
    if snap.last_loss is not None:
        parts.append(f"loss {snap.last_loss:.4f}")
    if snap.lr is not None:
        parts.append(f"lr {snap.lr:.2e}")
    if snap.eta_seconds is not None and snap.phase in ("training", "evaluating", "saving"):
        parts.append(f"eta {_fmt_eta(snap.eta_seconds)}")
    parts.append(snap.phase)
    return "  ".join(parts)


_WHEN = {"before_train": "before training", "after_train": "after training"}


def follow(ws, run_id: str, *, interval: float = 0.5, out=None) -> int:
    """Follow a run until it ends: exit 0 when it succeeded, 1 otherwise. Ctrl-C detaches."""
    from engine.runs.follow import RunFollower
    from engine.runs.records import get_run

    out = out or sys.stdout
    tty = out.isatty()
    record = get_run(ws, run_id)
    follower = RunFollower(record)
    last_line = ""
    shown_status = False

    def emit(text: str) -> None:
        nonlocal shown_status
        if tty and shown_status:
            out.write("\r\x1b[K")
            shown_status = False
        out.write(text + "\n")

    print(f"run {record.id}: {record.command}", file=out)
    update = None
    try:
        for update in follower.updates(interval):
            for sample in update.new_samples:
                when = _WHEN.get(sample.hook_point, f"iter {sample.iteration}")
                emit(f"--- evaluation ({when}) ---\n{sample.text}")
            line = status_line(update.snapshot)
            if line != last_line and not update.ended:
                last_line = line
                if tty:
                    width = shutil.get_terminal_size((100, 24)).columns - 1
                    out.write("\r\x1b[K" + line[:width])
                    shown_status = True
                else:
                    out.write(line + "\n")
            out.flush()
    except KeyboardInterrupt:
        emit(f"detached; run {record.id} goes on (`xtuner-wizard attach {record.id}`)")
        out.flush()
        return 0
    record = follower.record
    snap = follower.monitor.poll()
    if status_line(snap) != last_line:
        emit(status_line(snap))
    emit(
        f"run {record.id}: {record.state}"
        + (f" (exit {record.exit_code})" if record.exit_code not in (None, 0) else "")
    )
    if record.state != "succeeded":
        if record.cause:
            emit(f"  cause: {record.cause}")
        if record.fix:
            emit(f"  fix:   {record.fix}")
    elif record.checkpoint:
        emit(f"  checkpoint: {ws.rel(record.checkpoint)}")
    out.flush()
    return 0 if record.state == "succeeded" else 1
