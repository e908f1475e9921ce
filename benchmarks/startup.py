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


def first_paint(workspace: Path, timeout: float = 60.0) -> float:
    """Seconds from exec to the first screen's text on the terminal."""
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
    return elapsed


def to_exit(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"wizard first paint": [], "xtuner help": [], "--help": []}
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
    print(f"runs: {args.runs}, cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    print(f"{'what':<40} {'median s':>9} {'min s':>7} {'max s':>7}")
    labels = {
        "wizard first paint": "xtuner-wizard: first paint (pty 120x40)",
        "xtuner help": "xtuner help (imports torch), to exit",
        "--help": "xtuner-wizard --help, to exit",
    }
    for key, values in results.items():
        print(
            f"{labels[key]:<40} {statistics.median(values):>9.2f} "
            f"{min(values):>7.2f} {max(values):>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
