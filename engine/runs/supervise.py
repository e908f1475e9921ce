"""The run supervisor: ``python -m engine.runs.supervise [--detach] <record.json>``.

It starts the trainer in its own session/process group with default signal handling (a child
started from a non-interactive shell would otherwise inherit SIGINT ignored), sends its output to
the run's ``train.log``, waits for it, and writes the outcome into the run record: the real exit
code, the end time, the state (succeeded: exit 0 and a checkpoint; stopped: a stop was asked;
failed otherwise) and, for failures, the diagnosed cause and fix. It is the only writer of the
record while the run lives. While the trainer runs it notes the trainer's process tree
(torchrun's workers live in sessions of their own); once the trainer has exited, whatever of
that tree is still alive is SIGKILLed, so no orphaned worker outlives a run (both in
``engine.runs.processes``, the one place that signals a run's processes).

``--detach``: start a new session, fork the supervisor, print its pid and exit at once, so the
supervisor is reparented away from whoever launched it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.runs.diagnose import Cause, diagnose, disk_full_cause
from engine.runs.logparse import END_LINE_FORMAT
from engine.runs.monitor import RunMonitor
from engine.runs.processes import (
    RUN_MARK_ENV,
    ProcessIdentity,
    reap_tree,
    signal_group,
    wait_noting_tree,
)
from engine.runs.records import RunRecord

LOG_TAIL_BYTES = 256 * 1024
TREE_POLL_S = 1.0  # how often the trainer's process tree is noted while it runs
# Kept in the run folder while the run lives and deleted to make room when the disk fills up:
# the record must be able to say "disk full" on the very disk that is full.
RESERVE_NAME = "disk-reserve"
RESERVE_BYTES = 256 * 1024


def _detach(record_path: str) -> int:
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except OSError:
            pass
    pid = os.fork()
    if pid > 0:
        print(pid, flush=True)
        os._exit(0)
    # the supervisor: no terminal, stdin from /dev/null, stdout to the supervisor log (stderr)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    return supervise(Path(record_path))


def _read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _save(record: RunRecord) -> None:
    """Save the record; on a full disk free the run's reserve and try once more."""
    try:
        record.save()
    except OSError:
        try:
            (record.run_dir / RESERVE_NAME).unlink()
        except OSError:
            pass
        record.save()


def _reserve(record: RunRecord) -> None:
    try:
        with open(record.run_dir / RESERVE_NAME, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)
    except OSError:
        pass  # no room even for that: the preflight check should have refused the run


def _drop_reserve(record: RunRecord) -> None:
    try:
        (record.run_dir / RESERVE_NAME).unlink()
    except OSError:
        pass


def _outcome(record: RunRecord, code: int, log_path: Path) -> Cause | None:
    """State and cause from the trainer's exit, the stop marker, its checkpoints and its log."""
    from engine.runs.checkpoints import checkpoints_in, newest_checkpoint

    snap = RunMonitor(record.work_dir).poll()
    record.iteration = snap.iteration or None
    record.max_iters = snap.max_iters
    ckpt = newest_checkpoint(record.work_dir)
    record.checkpoint = str(ckpt) if ckpt else None
    record.checkpoints = [str(p) for p in checkpoints_in(record.work_dir)]
    if record.stop_marker.exists():
        record.state = "stopped"
        kept = f"; the last checkpoint is {Path(ckpt).name}" if ckpt else ""
        return Cause(
            "stopped",
            "stopped on request: no checkpoint is written on interrupt, work since the last "
            f"checkpoint is lost{kept}",
            "resume from the last checkpoint with `xtuner-wizard resume`"
            if ckpt
            else "start it again with `xtuner-wizard train`",
        )
    if code == 0 and ckpt is not None:
        record.state = "succeeded"
        return None
    record.state = "failed"
    tail = _read_tail(log_path)
    cause = disk_full_cause(record.work_dir, tail) or diagnose(
        tail, code, config_path=record.config
    )
    if cause is None:  # exit 0 but no checkpoint
        cause = Cause(
            "no_checkpoint",
            "the trainer exited 0 but wrote no checkpoint",
            "check the end of the log; is save_steps larger than the run's iterations?",
        )
    return cause


def supervise(record_path: Path) -> int:
    record = RunRecord.load(record_path)
    me = ProcessIdentity.of(os.getpid())
    record.pid = os.getpid()
    record.supervisor_started = me.started if me else None
    record.started = record.started or time.time()
    _reserve(record)
    _save(record)  # the pid, at once: refresh() can tell a live supervisor from a lost one
    trainer: subprocess.Popen | None = None

    def ask_stop(signum, _frame):  # SIGINT/SIGTERM to the supervisor: stop the run cleanly
        try:
            record.stop_marker.touch()
        except OSError:
            pass
        if trainer is not None:
            signal_group(trainer.pid, signal.SIGINT)  # its own child: the pid is not reused

    signal.signal(signal.SIGINT, ask_stop)
    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from engine.xtuner_env import child_env

    log_path = record.log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    Path(record.work_dir).mkdir(parents=True, exist_ok=True)

    def note(text: str) -> None:
        try:
            log.write(text.encode())
        except OSError:
            pass  # a full disk: the record still tells

    with open(log_path, "ab", buffering=0) as log:
        note(f"$ {record.command}\n")
        note(f"[xtuner-wizard] run {record.id} started, supervisor pid {os.getpid()}\n")
        mark = f"{record.record_path}@{os.getpid()}"
        try:
            # The trainer: its own session and process group (stop signals the whole group);
            # exec resets our handled SIGINT to the default, so Ctrl-C semantics are normal.
            trainer = subprocess.Popen(
                record.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(extra={**record.env, RUN_MARK_ENV: mark}),
                cwd=record.workspace,
                start_new_session=True,
            )
        except OSError as exc:
            record.state = "failed"
            record.ended = time.time()
            record.cause_kind, record.cause = "error", f"could not start the trainer: {exc}"
            record.fix = (
                "check that the venv's python and xtuner are installed (`xtuner-wizard doctor`)"
            )
            note(END_LINE_FORMAT.format(state="failed", code="none") + "\n")
            _save(record)
            _drop_reserve(record)
            return 1
        started = ProcessIdentity.of(trainer.pid)
        record.trainer_pid = trainer.pid
        record.trainer_pgid = trainer.pid
        record.trainer_started = started.started if started else None
        record.state = "running"
        _save(record)
        # meanwhile its tree is noted; once it exited, whatever is left of it is killed
        code, tree = wait_noting_tree(trainer, TREE_POLL_S)
        reap_tree(trainer.pid, tree.values(), mark)
        record.ended = time.time()
        record.exit_code = code
        cause = _outcome(record, code, log_path)
        if cause is not None:
            record.cause_kind, record.cause, record.fix = cause.kind, cause.message, cause.fix
        note("\n" + END_LINE_FORMAT.format(state=record.state, code=code) + "\n")
    if record.state == "succeeded":
        # before the record says so: whoever sees "succeeded" then also finds the step done
        try:
            from engine.workspace import Workspace

            Workspace(record.workspace).mark_done("train")
        except Exception as exc:  # noqa: BLE001 - the record below still tells the outcome
            print(f"could not mark the train step done: {exc}", file=sys.stderr)
    _save(record)
    _drop_reserve(record)
    return 0 if record.state == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--detach":
        return _detach(args[1])
    if len(args) != 1:
        print("usage: python -m engine.runs.supervise [--detach] RECORD.json", file=sys.stderr)
        return 2
    return supervise(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
