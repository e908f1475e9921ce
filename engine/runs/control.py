"""Look after runs: refresh a record against the live processes, stop, wait."""

from __future__ import annotations

import os
import signal
import time

from engine.errors import WizardError
from engine.runs.records import (
    RunRecord,
    get_run,
    group_alive,
    process_alive,
    trainer_processes,
)
from engine.workspace import Workspace

SUPERVISOR_MARK = "engine.runs.supervise"


def supervisor_alive(record: RunRecord) -> bool:
    return process_alive(record.pid, SUPERVISOR_MARK)


def trainer_alive(record: RunRecord) -> bool:
    """The trainer's process group lives, or a process still trains the run's config (a torchrun
    worker, in a session of its own, outlives a SIGKILLed torchrun)."""
    if record.trainer_pgid and group_alive(record.trainer_pgid):
        return True
    return bool(record.trainer_pid and trainer_processes(record.config))


def refresh(record: RunRecord) -> RunRecord:
    """The record as it stands now. An active record whose supervisor is gone without writing an
    end state becomes ``lost`` (or ``killed`` when its trainer is gone too and the log shows a
    kill); one whose trainer still runs stays ``running`` (orphaned: it can still finish)."""
    if not record.active:
        return record
    try:
        record = record.reload()
    except WizardError:
        return record
    if not record.active:
        return record
    if record.pid is None:
        # the supervisor has not written its pid yet: give a fresh start a little time
        if record.started and time.time() - record.started < 60:
            return record
    elif supervisor_alive(record):
        return record
    # the supervisor is gone: did it finish in the meantime?
    try:
        record = record.reload()
    except WizardError:
        return record
    if not record.active:
        return record
    if trainer_alive(record):
        return record  # orphaned trainer: still training, outcome will be unknown
    record.state = "lost"
    record.ended = record.ended or time.time()
    record.cause_kind = "lost"
    record.cause = (
        "the run's supervisor ended without recording the outcome (it was killed, or the machine "
        "restarted)"
    )
    from engine.runs.launch import last_checkpoint

    ckpt = last_checkpoint(record.work_dir)
    record.checkpoint = str(ckpt) if ckpt else None
    record.fix = (
        "resume from the last checkpoint with `xtuner-wizard resume`"
        if ckpt
        else "start it again with `xtuner-wizard train`"
    )
    record.save()
    return record


def _wait_until(predicate, deadline: float) -> bool:
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _wait_gone(record: RunRecord, deadline: float) -> bool:
    while time.time() < deadline:
        if not trainer_alive(record):
            return True
        time.sleep(0.1)
    return not trainer_alive(record)


def stop_run(
    ws: Workspace, run_id: str | None = None, *, timeout: float = 30.0, grace: float = 10.0
) -> RunRecord:
    """Stop a run: SIGINT to every process group of the trainer's tree (torchrun and its workers,
    each in a session of its own), then SIGTERM after ``timeout`` s, then SIGKILL after ``grace``
    s more. Returns the final record (state ``stopped``). No checkpoint is written on
    interrupt: work since the last checkpoint is lost."""
    record = refresh(get_run(ws, run_id))
    if not record.active:
        raise WizardError(
            f"run {record.id} is not running (it {record.state})",
            fix="see `xtuner-wizard runs`",
        )
    record.run_dir.mkdir(parents=True, exist_ok=True)
    record.stop_marker.touch()
    # a run still starting: wait for the trainer's pid (or the supervisor's end)
    deadline = time.time() + 30
    while record.active and record.trainer_pid is None and time.time() < deadline:
        time.sleep(0.1)
        record = record.reload()
    if record.trainer_pid is not None and record.active:
        # torchrun starts each worker in a session of its own: a signal to the trainer's group
        # would miss them, so the whole tree is stopped (SIGINT, SIGTERM, SIGKILL per group)
        from engine.distributed import stop_process_tree

        if process_alive(record.trainer_pid):
            stop_process_tree(record.trainer_pid, timeout=timeout, grace=grace)
        for orphan in trainer_processes(record.config):  # workers whose torchrun is gone
            stop_process_tree(orphan, timeout=timeout, grace=grace)
        _wait_gone(record, time.time() + grace)
    elif record.active and supervisor_alive(record):
        os.kill(record.pid, signal.SIGINT)  # type: ignore[arg-type]
    # the supervisor writes the outcome; if it is gone, write it here
    end = time.time() + 15
    while time.time() < end:
        record = record.reload()
        if not record.active:
            # the outcome is written; the supervisor exits right after: leave nothing behind
            _wait_until(lambda r=record: not supervisor_alive(r), time.time() + 10)
            return record
        if not supervisor_alive(record):
            break
        time.sleep(0.1)
    record = record.reload()
    if record.active:
        record.state = "stopped"
        record.ended = time.time()
        record.cause_kind = "stopped"
        record.cause = "stopped on request (its supervisor was gone; the exit code is unknown)"
        record.fix = "resume from the last checkpoint with `xtuner-wizard resume`"
        record.save()
    return record


def wait_run(
    ws: Workspace,
    run_id: str | None = None,
    *,
    timeout: float | None = None,
    interval: float = 0.5,
) -> RunRecord:
    """Block until the run ends (or ``timeout`` s pass); the record as it stands then."""
    record = get_run(ws, run_id)
    deadline = None if timeout is None else time.time() + timeout
    while True:
        record = refresh(record)
        if not record.active:
            return record
        if deadline is not None and time.time() >= deadline:
            return record
        time.sleep(interval)
