"""Time to first paint of the wizard, against ``xtuner help`` (which imports torch).

The wizard runs under a pseudo-terminal (120x40, TERM=xterm-256color) on a fresh workspace;
the clock stops when the first screen's text (the step rail's "Environment") arrives on the
master side, then the app is closed. ``xtuner help`` and ``xtuner-wizard --help`` are timed
to exit. Runs are interleaved; the median of each is reported.

    .venv/bin/python benchmarks/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import resource
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARKER = b"Environment"


def _cpu_seconds(pid: int) -> float:
    """user + system CPU seconds a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_paint(workspace: Path, timeout: float = 60.0) -> tuple[float, float]:
    """(wall seconds, CPU seconds) from exec to the first screen's text on the terminal."""
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    env.pop("SSH_CONNECTION", None)
    env.pop("SSH_TTY", None)
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execve(
            str(BIN / "xtuner-wizard"),
            [str(BIN / "xtuner-wizard"), "--workspace", str(workspace)],
            env,
        )
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    seen = b""
    elapsed = None
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if MARKER in seen:
                elapsed = time.perf_counter() - start
                cpu = _cpu_seconds(pid)
                break
    finally:
        try:
            os.write(fd, b"q")
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                select.select([fd], [], [], 0.1)
                try:
                    os.read(fd, 65536)
                except OSError:
                    pass
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except (OSError, ChildProcessError):
            pass
        os.close(fd)
    if elapsed is None:
        raise RuntimeError(f"no first paint within {timeout} s; got {seen[-300:]!r}")
    return elapsed, cpu


def to_exit(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a command run to its exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {
        "wizard first paint": [],
        "xtuner help": [],
        "--help": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    try:
        # One untimed round warms the page cache for all three.
        first_paint(tmp / "warm")
        to_exit([str(BIN / "xtuner"), "help"])
        for i in range(args.runs):
            results["wizard first paint"].append(first_paint(tmp / f"ws{i}"))
            results["xtuner help"].append(to_exit([str(BIN / "xtuner"), "help"]))
            results["--help"].append(to_exit([str(BIN / "xtuner-wizard"), "--help"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"runs: {args.runs}, cores: {os.cpu_count()}, load average {load:.1f}, "
        f"python {sys.version.split()[0]}"
    )
    print(f"| {'what':<40} | wall median s | min | max | CPU median s |")
    print(f"|{'-' * 42}|---|---|---|---|")
    labels = {
        "wizard first paint": "xtuner-wizard: first paint (pty 120x40)",
        "xtuner help": "xtuner help (imports torch), to exit",
        "--help": "xtuner-wizard --help, to exit",
    }
    for key, values in results.items():
        walls = [w for w, _ in values]
        cpus = [c for _, c in values]
        print(
            f"| {labels[key]:<40} | {statistics.median(walls):.2f} | {min(walls):.2f} | "
            f"{max(walls):.2f} | {statistics.median(cpus):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
