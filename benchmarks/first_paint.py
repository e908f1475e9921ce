"""Bytes of the wizard's first paint in a 120x40 pseudo-terminal, and when they arrive.

    .venv/bin/python benchmarks/first_paint.py WORKSPACE [--step train] [--runs 3]

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
    workspace: Path, step: str, seconds: float = 6.0
) -> tuple[int, list[tuple[float, int]]]:
    state_path = workspace / ".wizard" / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    state["current_step"] = step
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(state))
    env = dict(os.environ, TERM="xterm-256color")
    argv = [str(ROOT / ".venv/bin/xtuner-wizard"), "--workspace", str(workspace), "--low-bandwidth"]
    cap = run_in_pty(argv, env=env, duration=seconds)
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
    args = ap.parse_args()
    sizes = []
    for i in range(args.runs):
        size, timeline = first_paint(args.workspace.resolve(), args.step)
        sizes.append(size)
        print(f"run {i + 1}: first paint {size / 1024:.1f} KB; writes (s, bytes): {timeline[:12]}")
    print(f"median first paint: {statistics.median(sizes) / 1024:.1f} KB over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
