"""Count the bytes a program writes to a pseudo-terminal, over time.

The program runs under ``pty.fork()`` with the window size set by ``TIOCSWINSZ`` (as an SSH
client would), and every ``os.read`` on the master side is timestamped. Nothing is ever written
to the program except, optionally, keys at given times.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PtyCapture:
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    raw: bytearray = field(default_factory=bytearray)
    exit_status: int | None = None
    cpu_seconds: float | None = None  # user + system CPU time of the program (from wait4)
    # (seconds since start, the program's CPU seconds so far), read from /proc about once a second
    cpu_samples: list[tuple[float, float]] = field(default_factory=list)

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds the program used between two moments (nearest samples inside them)."""
        inside = [(t, c) for t, c in self.cpu_samples if start <= t <= end]
        if len(inside) < 2:
            return None
        return inside[-1][1] - inside[0][1]

    def bytes_between(self, start: float, end: float) -> int:
        return sum(n for t, n in self.chunks if start <= t < end)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.chunks)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def run_in_pty(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cols: int = 120,
    rows: int = 40,
    duration: float = 20.0,
    keys: list[tuple[float, bytes]] | None = None,
    stop_when=None,
    cwd: str | None = None,
) -> PtyCapture:
    """Run argv in a pty of cols x rows for `duration` s (or until `stop_when(elapsed)`)."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            # The size is known before the program starts, as with an SSH session.
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            if cwd:
                os.chdir(cwd)
            os.execvpe(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)
    cap = PtyCapture()
    pending = sorted(keys or [])
    start = time.monotonic()
    next_cpu = 0.0
    try:
        while True:
            now = time.monotonic() - start
            if now >= next_cpu:
                cpu = _cpu_of(pid)
                if cpu is not None:
                    cap.cpu_samples.append((now, cpu))
                next_cpu = now + 1.0
            if now >= duration or (stop_when is not None and stop_when(now)):
                break
            while pending and pending[0][0] <= now:
                os.write(fd, pending.pop(0)[1])
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                cap.chunks.append((time.monotonic() - start, len(data)))
                cap.raw.extend(data)
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                cap.exit_status = status
                cap.cpu_seconds = usage.ru_utime + usage.ru_stime
                break
    finally:
        if cap.exit_status is None:
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    # keep draining so the child can exit
                    r, _, _ = select.select([fd], [], [], 0.05)
                    if r:
                        try:
                            os.read(fd, 65536)
                        except OSError:
                            pass
                    done, status, usage = os.wait4(pid, os.WNOHANG)
                    if done:
                        cap.exit_status = status
                        cap.cpu_seconds = usage.ru_utime + usage.ru_stime
                        break
                else:
                    os.kill(pid, signal.SIGKILL)
                    _, cap.exit_status, usage = os.wait4(pid, 0)
                    cap.cpu_seconds = usage.ru_utime + usage.ru_stime
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(fd)
    return cap
