"""The run supervisor: ``python -m engine.runs.supervise [--detach] <record.json>``.

It starts the trainer in its own session/process group with default signal handling (a child
started from a non-interactive shell would otherwise inherit SIGINT ignored), sends its output to
the run's ``train.log``, waits for it, and writes the outcome into the run record: the real exit
code, the end time, the state (succeeded: exit 0 and a checkpoint; stopped: a stop was asked;
failed otherwise) and, for failures, the diagnosed cause and fix. It is the only writer of the
record while the run lives. While the trainer runs it notes the trainer's process tree
(torchrun's workers live in sessions of their own); once the trainer has exited, whatever of
that tree is still alive is SIGKILLed, so no orphaned worker outlives a run.

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

from engine.runs.diagnose import Cause, diagnose
from engine.runs.monitor import END_LINE_FORMAT, RunMonitor
from engine.runs.records import RunRecord

LOG_TAIL_BYTES = 256 * 1024
TREE_POLL_S = 1.0  # how often the trainer's process tree is noted while it runs
RUN_MARK_ENV = "XTUNER_WIZARD_RUN"  # in every process of a run's tree: "<record path>@<pid>"


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


def _new_checkpoint(work_dir: Path, since: float) -> Path | None:
    from engine.runs.launch import last_checkpoint

    ckpt = last_checkpoint(work_dir)
    if ckpt is None:
        return None
    try:
        return ckpt if ckpt.stat().st_mtime >= since - 1 else None
    except OSError:
        return None


def _track(tree: dict, pid: int) -> None:
    """Add ``pid``'s live descendants to ``tree`` (pid -> psutil.Process, which remembers the
    start time: a pid reused later by another program is never taken for a worker)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        tree.setdefault(child.pid, child)


def _marked(mark: str) -> list:
    """This user's processes whose environment carries ``RUN_MARK_ENV=mark``: the run's tree,
    found even after its parent died and they were reparented (no start-up race)."""
    import psutil

    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(RUN_MARK_ENV) == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_and_reap(trainer: subprocess.Popen, mark: str, every: float = TREE_POLL_S) -> int:
    """Wait for the trainer; meanwhile note its descendants (torchrun's workers live in
    sessions of their own). Once it has exited, SIGKILL whatever of its tree is still alive
    (its own group, and workers orphaned by a torchrun that was killed: noted, or found by the
    run's mark in their environment), then return its code."""
    import psutil

    tree: dict[int, psutil.Process] = {}
    while True:
        _track(tree, trainer.pid)
        try:
            code = trainer.wait(timeout=every)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(trainer.pid, 0)  # a stop escalated to the group: make sure nothing is left
        time.sleep(0.5)
        os.killpg(trainer.pid, signal.SIGKILL)
    except OSError:
        pass

    def living(proc: psutil.Process) -> bool:
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    for proc in _marked(mark):
        tree.setdefault(proc.pid, proc)
    left = [p for p in tree.values() if living(p)]
    if left:
        time.sleep(0.5)  # a torchrun that exited on its own has just signalled them
        for proc in left:
            try:
                if proc.is_running():
                    proc.kill()  # is_running compares the start time: never a reused pid
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)
    return code


def supervise(record_path: Path) -> int:
    record = RunRecord.load(record_path)
    record.pid = os.getpid()
    started = time.time()
    record.started = record.started or started
    record.save()  # the pid, at once: refresh() can tell a live supervisor from a lost one
    trainer: subprocess.Popen | None = None

    def ask_stop(signum, _frame):  # SIGINT/SIGTERM to the supervisor: stop the run cleanly
        try:
            record.stop_marker.touch()
        except OSError:
            pass
        if trainer is not None:
            try:
                os.killpg(trainer.pid, signal.SIGINT)
            except OSError:
                pass

    signal.signal(signal.SIGINT, ask_stop)
    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from engine.xtuner_env import child_env

    log_path = record.log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    Path(record.work_dir).mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as log:
        log.write(f"$ {record.command}\n".encode())
        log.write(
            f"[xtuner-wizard] run {record.id} started, supervisor pid {os.getpid()}\n".encode()
        )
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
            log.write(END_LINE_FORMAT.format(state="failed", code="none").encode() + b"\n")
            record.save()
            return 1
        record.trainer_pid = trainer.pid
        record.trainer_pgid = trainer.pid
        record.state = "running"
        record.save()
        code = _wait_and_reap(trainer, mark)
        record.ended = time.time()
        record.exit_code = code
        snap = RunMonitor(record.work_dir).poll()
        record.iteration = snap.iteration or None
        record.max_iters = snap.max_iters
        ckpt = _new_checkpoint(Path(record.work_dir), started)
        record.checkpoint = str(ckpt) if ckpt else None
        stopped = record.stop_marker.exists()
        cause: Cause | None = None
        if stopped:
            record.state = "stopped"
            kept = f"; the last checkpoint is {Path(ckpt).name}" if ckpt else ""
            cause = Cause(
                "stopped",
                "stopped on request: no checkpoint is written on interrupt, work since the last "
                f"checkpoint is lost{kept}",
                "resume from the last checkpoint with `xtuner-wizard resume`"
                if ckpt
                else "start it again with `xtuner-wizard train`",
            )
        elif code == 0 and ckpt is not None:
            record.state = "succeeded"
        else:
            record.state = "failed"
            cause = diagnose(_read_tail(log_path), code, config_path=record.config)
            if cause is None:  # exit 0 but no checkpoint
                cause = Cause(
                    "no_checkpoint",
                    "the trainer exited 0 but wrote no checkpoint",
                    "check the end of the log; is save_steps larger than the run's iterations?",
                )
        if cause is not None:
            record.cause_kind, record.cause, record.fix = cause.kind, cause.message, cause.fix
        log.write(b"\n" + END_LINE_FORMAT.format(state=record.state, code=code).encode() + b"\n")
    if record.state == "succeeded":
        # before the record says so: whoever sees "succeeded" then also finds the step done
        try:
            from engine.workspace import Workspace

            Workspace(record.workspace).mark_done("train")
        except Exception as exc:  # noqa: BLE001 - the record below still tells the outcome
            print(f"could not mark the train step done: {exc}", file=sys.stderr)
    record.save()
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
