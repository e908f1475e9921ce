"""Which processes are a run's, and stopping them: the one place that signals a run's processes.

A pid alone proves nothing: after a reboot or a container restart the pid a record names may
belong to another program. A process is a run's only when its pid, its start time (as the
kernel counts it, via psutil's ``create_time``) and its command line all match what the run
recorded, or when its environment carries the run's mark (``RUN_MARK_ENV``, set by the
supervisor on the trainer and inherited by every worker). Nothing here signals a process that
fails those checks.

torchrun starts every worker in a session of its own (torch.distributed.elastic's
SubprocessHandler: ``start_new_session=True``), so a signal to torchrun's process group does not
reach the workers; whoever stops a run snapshots the tree while torchrun lives, and cleans up
after (nvitop's ``api/process.py`` identifies processes the same way: pid and create time).
The supervisor notes its trainer's tree while it runs (:func:`wait_noting_tree`) and, once the
trainer has exited, kills what is left of it (:func:`reap_tree`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

RUN_MARK_ENV = "XTUNER_WIZARD_RUN"  # in every process of a run's tree: "<record path>@<pid>"
SUPERVISOR_MODULE = "engine.runs.supervise"
TRAIN_SCRIPT_MARKS = ("xtuner/tools/train.py", "xtuner.tools.train")
START_TOLERANCE_S = 0.05  # create_time is derived from clock ticks: equal within a tick
REAP_SETTLE_S = 0.5  # after a trainer exited: a torchrun that ended on its own signals its workers


@dataclass(frozen=True)
class ProcessIdentity:
    """What a record keeps of a process: pid, start time (epoch seconds) and a command-line
    mark. ``started`` None: an old record; the command line alone is then checked."""

    pid: int
    started: float | None
    mark: str | None = None

    @classmethod
    def of(cls, pid: int, mark: str | None = None) -> ProcessIdentity | None:
        """The identity of the live process ``pid`` now; None if it is gone."""
        import psutil

        try:
            return cls(pid, psutil.Process(pid).create_time(), mark)
        except psutil.Error:
            return None

    def process(self):
        """The live ``psutil.Process`` this identity names, or None when the pid is gone, a
        zombie, or now another program (a different start time or command line)."""
        import psutil

        if not self.pid or self.pid <= 0:
            return None
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if self.started is not None and abs(proc.create_time() - self.started) > (
                START_TOLERANCE_S
            ):
                return None
            if self.mark is not None and self.mark not in " ".join(proc.cmdline()):
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def is_alive(pid: int | None, started: float | None, mark: str | None = None) -> bool:
    """Whether ``pid`` is still the process a record names (start time and command line)."""
    return bool(pid) and ProcessIdentity(int(pid), started, mark).alive()  # type: ignore[arg-type]


def marked_processes(mark: str) -> list:
    """This user's live processes whose environment carries ``RUN_MARK_ENV=mark``: a run's tree,
    found even after its parent died and they were reparented."""
    import psutil

    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(RUN_MARK_ENV) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def training_processes(work_dir: str | os.PathLike | None) -> list[int]:
    """Live processes running xtuner's train script into ``work_dir`` (``--work-dir DIR`` among
    their arguments). A run's work dir is its own (``work_dirs/<run id>``), so this names the
    run's workers even when torchrun and the supervisor were both SIGKILLed."""
    if not work_dir:
        return []
    target = os.fsencode(str(work_dir))
    found = []
    proc_root = Path("/proc")
    for entry in proc_root.iterdir() if proc_root.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if target not in argv:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(m.encode() in a for a in argv for m in TRAIN_SCRIPT_MARKS):
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    """``pid``'s descendants (all sessions), parents before children; [] when it is gone."""
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def alive(pids: Sequence[int]) -> list[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            continue
    return out


def note_descendants(tree: dict, pid: int) -> None:
    """Add ``pid``'s live descendants (all sessions) to ``tree`` (pid -> ``psutil.Process``,
    which remembers the start time: a pid reused later by another program is never taken for
    one of them)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        tree.setdefault(child.pid, child)


def wait_noting_tree(child: subprocess.Popen, every: float = 1.0) -> tuple[int, dict]:
    """Wait for ``child`` (a trainer started in a process group of its own); meanwhile note its
    descendants every ``every`` s (torchrun's workers live in sessions of their own). Its exit
    code and the tree noted."""
    tree: dict = {}
    while True:
        note_descendants(tree, child.pid)
        try:
            return child.wait(timeout=every), tree
        except subprocess.TimeoutExpired:
            continue


def signal_group(pgid: int, sig: int) -> bool:
    """``sig`` to the process group ``pgid``, which must be the caller's own child's (a child
    not yet waited for keeps its pid: never another program's); False when it is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except OSError:
        return False


def interrupt(proc) -> bool:
    """SIGINT to a verified ``psutil.Process`` (psutil re-checks its start time first)."""
    import psutil

    try:
        proc.send_signal(signal.SIGINT)
        return True
    except psutil.Error:
        return False


def reap_tree(pgid: int, noted: Iterable = (), mark: str | None = None) -> list[int]:
    """Once a run's trainer (leader of process group ``pgid``, the caller's child) has exited:
    SIGKILL what is left of its group, then whatever of its tree is still alive (``noted``
    while it ran, or found by the run's ``mark`` in their environment: workers orphaned by a
    torchrun that was killed). Returns the pids still alive at the end."""
    if signal_group(pgid, 0):  # a stop escalated to the group: make sure nothing is left
        time.sleep(REAP_SETTLE_S)
        signal_group(pgid, signal.SIGKILL)
    left = {p.pid: p for p in noted}
    if mark is not None:
        for proc in marked_processes(mark):
            left.setdefault(proc.pid, proc)
    if not _living(left.values()):
        return []
    time.sleep(REAP_SETTLE_S)  # a torchrun that exited on its own has just signalled them
    return stop_tree(None, extra=left.values(), steps=((signal.SIGKILL, 10.0),))


def _living(procs: Iterable) -> list:
    import psutil

    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            continue
    return out


def stop_tree(
    root,
    *,
    extra: Iterable = (),
    timeout: float = 30.0,
    grace: float = 10.0,
    poll: float = 0.1,
    steps: Sequence[tuple[int, float]] | None = None,
) -> list[int]:
    """Stop ``root`` (a verified ``psutil.Process``: torchrun or xtuner.tools.train, or None)
    and every descendant, in any session, plus ``extra`` verified processes: SIGINT to each,
    SIGTERM after ``timeout`` s, SIGKILL after ``grace`` s more (``steps``: other (signal,
    seconds) pairs). Only ``psutil.Process`` objects are signalled, and psutil re-checks their
    start time before each signal, so a pid that has meanwhile been reused by another program
    is never hit. Returns the pids still alive at the end."""
    import psutil

    known: dict[int, psutil.Process] = {}

    def note(proc) -> None:
        if proc is not None:
            known.setdefault(proc.pid, proc)

    def collect() -> None:
        if root is not None:
            try:
                for child in root.children(recursive=True):
                    note(child)
            except psutil.Error:
                pass

    note(root)
    for proc in extra:
        note(proc)
    collect()

    def living() -> list:
        return _living(known.values())

    def signal_all(sig: int) -> None:
        for proc in living():
            try:
                proc.send_signal(sig)  # psutil checks the pid is still this process
            except psutil.Error:
                pass

    def wait(seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            collect()  # workers started late are caught too
            if not living():
                return True
            time.sleep(poll)
        return not living()

    if steps is None:
        steps = ((signal.SIGINT, timeout), (signal.SIGTERM, grace), (signal.SIGKILL, grace))
    for sig, seconds in steps:
        signal_all(sig)
        if wait(seconds):
            break
    return [p.pid for p in living()]


def stop_process_tree(
    pid: int, *, timeout: float = 30.0, grace: float = 10.0, poll: float = 0.1
) -> list[int]:
    """:func:`stop_tree` for a pid taken to be the caller's own child (tests, benchmarks)."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return []
    return stop_tree(root, timeout=timeout, grace=grace, poll=poll)
