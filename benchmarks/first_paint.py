"""Bytes of the wizard's first paint in a 120x40 pseudo-terminal, and when they arrive.

    .venv/bin/python benchmarks/first_paint.py WORKSPACE [--step train] [--runs 3] [--source TREE ...]

Opens the wizard (``--low-bandwidth``, as over SSH) on WORKSPACE at STEP, counts what the
terminal receives for 6 s, and prints the bytes from the first frame to 2 s after it (the
first paint, as benchmarks/wire_bytes.py counts it) with a timeline of the writes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pty_probe import run_in_pty  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAME_START = b"\x1b[?1049h"  # the alternate screen: Textual's first frame follows


def first_paint(
    workspace: Path, step: str, seconds: float = 6.0, source: Path = ROOT
) -> tuple[int, list[tuple[float, int]]]:
    state_path = workspace / ".wizard" / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    state["current_step"] = step
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(state))
    # ``source``: the tree whose tui/ and engine/ run (another checkout, to compare versions).
    env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=str(source))
    argv = [str(ROOT / ".venv/bin/python"), "-m", "tui.launcher"]
    argv += ["--workspace", str(workspace), "--low-bandwidth"]
    cap = run_in_pty(argv, env=env, duration=seconds, cwd=str(source))  # -m puts the cwd first
    raw = bytes(cap.raw)
    offset = raw.find(FRAME_START)
    seen, t0 = 0, None
    for t, n in cap.chunks:
        if t0 is None and seen + n > offset:
            t0 = t
        seen += n
    t0 = t0 or 0.0
    timeline = [(round(t - t0, 3), n) for t, n in cap.chunks if t >= t0]
    return cap.bytes_between(t0, t0 + 2.0), timeline


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--step", default="train")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--source",
        type=Path,
        action="append",
        default=None,
        help="source trees to compare (default: this one)",
    )
    args = ap.parse_args()
    for source in args.source or [ROOT]:
        sizes = []
        for _ in range(args.runs):
            size, _timeline = first_paint(
                args.workspace.resolve(), args.step, source=source.resolve()
            )
            sizes.append(size)
        median = statistics.median(sizes) / 1024
        print(f"{source}: median first paint {median:.1f} KB over {args.runs} runs ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
