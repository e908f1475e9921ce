"""Look after runs: refresh a record against the live processes, stop, wait; the run a merge
takes.

A record tells the truth after kills, reboots and full disks: a process counts as the run's only
when its pid, start time and command line match the record (``engine.runs.processes``), and a
run whose supervisor is gone without writing its outcome is judged from what it left (the
supervisor's end line, its checkpoints against the iterations it was to train, the stop marker,
the free disk). A reader on a full disk still answers, from the record in memory.
"""

from __future__ import annotations

import time

from engine.errors import WizardError
from engine.runs.processes import (
    SUPERVISOR_MODULE,
    ProcessIdentity,
    interrupt,
    marked_processes,
    stop_tree,
    training_processes,
)
from engine.runs.records import RunRecord, get_run, list_runs
from engine.workspace import Workspace

STARTING_GRACE_S = 60  # a record with no supervisor pid yet: how long it may be starting


def supervisor(record: RunRecord):
    """The run's live supervisor (``psutil.Process``), or None. Its command line names the
    record: a pid reused by another program never passes."""
    if not record.pid:
        return None
    return ProcessIdentity(record.pid, record.supervisor_started, str(record.record_path)).process()


def supervisor_alive(record: RunRecord) -> bool:
    if not record.pid:
        return False
    if supervisor(record) is not None:
        return True
    # records written before start times were kept: the module name and the record's path
    return record.supervisor_started is None and (
        ProcessIdentity(record.pid, None, SUPERVISOR_MODULE).alive()
        and ProcessIdentity(record.pid, None, record.id).alive()
    )


def trainer(record: RunRecord):
    """The run's live trainer process (torchrun or xtuner.tools.train), or None."""
    if not record.trainer_pid:
        return None
    ident = ProcessIdentity(record.trainer_pid, record.trainer_started, str(record.work_dir))
    proc = ident.process()
    if proc is None and record.trainer_started is None:
        # an old record: the command line alone (its config), never the pid alone
        proc = ProcessIdentity(record.trainer_pid, None, str(record.config)).process()
    return proc


def run_processes(record: RunRecord, *, with_supervisor: bool = False) -> list:
    """Every live process that is provably the run's: its trainer and whatever carries the
    run's mark or trains into its work dir (torchrun workers outlive a SIGKILLed torchrun);
    ``with_supervisor``: its supervisor too (what the run costs the machine). A pid the record
    names that now belongs to another program is never among them."""
    import psutil

    found = {}
    if with_supervisor and (sup := supervisor(record)) is not None:
        found[sup.pid] = sup
    main = trainer(record)
    if main is not None:
        found[main.pid] = main
    if record.pid:
        for proc in marked_processes(f"{record.record_path}@{record.pid}"):
            found.setdefault(proc.pid, proc)
    for pid in training_processes(record.work_dir):
        if pid not in found:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
    return list(found.values())


def trainer_alive(record: RunRecord) -> bool:
    return trainer(record) is not None or bool(training_processes(record.work_dir))


def _judge_from_what_is_left(record: RunRecord) -> None:
    """The outcome of a run whose supervisor died without recording it."""
    from engine.runs.checkpoints import checkpoint_iteration, checkpoints_in, newest_checkpoint
    from engine.runs.diagnose import disk_full_cause
    from engine.runs.logparse import END_LINE
    from engine.runs.monitor import RunMonitor

    snap = RunMonitor(record.work_dir, record.log_path).poll()
    ckpt = newest_checkpoint(record.work_dir)
    record.checkpoint = str(ckpt) if ckpt else None
    record.checkpoints = [str(p) for p in checkpoints_in(record.work_dir)]
    record.iteration = snap.iteration or record.iteration
    record.max_iters = snap.max_iters or record.max_iters
    record.ended = record.ended or time.time()
    ended = None
    for line in reversed(snap.log_tail):
        m = END_LINE.match(line)
        if m:
            ended = (m.group(1), int(m.group(2)) if m.group(2) is not None else None)
            break
    resume_fix = (
        "resume from the last checkpoint with `xtuner-wizard resume`"
        if ckpt
        else "start it again with `xtuner-wizard train`"
    )
    finished = (
        ckpt is not None
        and record.max_iters is not None
        and checkpoint_iteration(ckpt) == record.max_iters
    )
    disk = disk_full_cause(record.work_dir, "\n".join(snap.log_tail))
    if ended is not None and ended[0] in ("succeeded", "failed", "stopped"):
        record.state, record.exit_code = ended
        record.cause_kind = record.cause_kind or ("disk_full" if disk else None)
        if record.state != "succeeded" and not record.cause:
            record.cause = (disk.message if disk else "the run ended") + (
                " (its supervisor was gone before it wrote the record)"
            )
            record.fix = disk.fix if disk else resume_fix
    elif finished and not record.stop_marker.exists():
        # the trainer saved its last iteration's checkpoint: training finished
        record.state = "succeeded"
        record.cause_kind, record.cause, record.fix = None, None, None
    elif disk is not None:
        record.state = "failed"
        record.cause_kind, record.cause, record.fix = disk.kind, disk.message, disk.fix
    elif record.stop_marker.exists():
        record.state = "stopped"
        record.cause_kind = "stopped"
        record.cause = "stopped on request (its supervisor was gone; the exit code is unknown)"
        record.fix = resume_fix
    else:
        record.state = "lost"
        record.cause_kind = "lost"
        record.cause = (
            "the run's supervisor ended without recording the outcome (it was killed, or the "
            "machine restarted)"
        )
        record.fix = resume_fix


def refresh(record: RunRecord) -> RunRecord:
    """The record as it stands now. An active record whose supervisor is not alive (pid, start
    time and command line) is judged from what the run left, unless its trainer still runs
    (orphaned: it can still finish)."""
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
        if record.started and time.time() - record.started < STARTING_GRACE_S:
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
        return record  # orphaned trainer: still training
    _judge_from_what_is_left(record)
    if record.state == "succeeded":
        try:
            Workspace(record.workspace).mark_done("train")
        except OSError:
            pass
    record.try_save()  # a full disk: answer from memory; the next reader judges again
    return record


def _wait_until(predicate, deadline: float, every: float = 0.05) -> bool:
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def stop_run(
    ws: Workspace, run_id: str | None = None, *, timeout: float = 30.0, grace: float = 10.0
) -> RunRecord:
    """Stop a run: SIGINT to every process that is provably the run's (its trainer's tree,
    workers in sessions of their own included), then SIGTERM after ``timeout`` s, then SIGKILL
    after ``grace`` s more. A process whose pid was reused by another program is never
    signalled. Returns the final record (state ``stopped``). No checkpoint is written on
    interrupt: work since the last checkpoint is lost."""
    record = refresh(get_run(ws, run_id))
    if not record.active:
        raise WizardError(
            f"run {record.id} is not running (it {record.state})",
            fix="see `xtuner-wizard runs`",
        )
    try:
        record.run_dir.mkdir(parents=True, exist_ok=True)
        record.stop_marker.touch()
    except OSError:
        pass  # a full disk: the signal below still stops it
    # a run still starting: wait for the trainer's pid (or the supervisor's end)
    _wait_until(
        lambda: (r := record.reload()).trainer_pid is not None or not r.active,
        time.time() + 30,
        0.1,
    )
    record = record.reload()
    if record.active:
        procs = run_processes(record)
        main = trainer(record)
        if procs:
            stop_tree(main, extra=procs, timeout=timeout, grace=grace)
        elif (sup := supervisor(record)) is not None:
            interrupt(sup)  # it stops its trainer and records the outcome
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
    record = refresh(record.reload())
    if record.active:  # an orphaned trainer that would not die: say so, never pretend
        raise WizardError(
            f"run {record.id} did not stop",
            fix=f"check `xtuner-wizard runs`; its trainer is pid {record.trainer_pid}",
        )
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


def run_to_merge(ws: Workspace, run_id: str | None = None) -> RunRecord:
    """The run a merge (or a chat with a run's adapter) uses: ``run_id`` when given, else the
    newest finished run that left a whole checkpoint (a newer run stopped before its first
    save is not it), else the newest run (whose refusal then says why)."""
    from engine.runs.checkpoints import newest_checkpoint

    if run_id is not None:
        return get_run(ws, run_id)
    runs = [refresh(r) for r in list_runs(ws)]
    for record in reversed(runs):
        if not record.active and newest_checkpoint(record.work_dir) is not None:
            return record
    return get_run(ws)
