"""Wall seconds of ``xtuner-wizard merge`` on a trained demo workspace: this tree against an
older commit (issue 15: convert + merge + load check in one child process, not three).

    .venv/bin/python benchmarks/merge_speed.py [--runs 3] [--before REF] [--workspace DIR]

The workspace (default ``/tmp/merge-speed/ws``) is trained once with ``run-all --name 伍鲜同志``
on the demo model when it has no checkpoint yet. ``REF``'s ``engine/`` and ``tui/`` are
exported (``git archive``) to a temporary folder and put first on ``PYTHONPATH``; this tree
runs as installed. Each timed command is ``xtuner-wizard --workspace WS merge --keep 1``, the
whole command from exec to exit; the two are interleaved (A B, B A, A B, ...). Also shown:
the python child processes each merge started (``$`` lines of ``.wizard/merge.log``) and the
median of each phase's seconds from the command's own timestamps.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
LAUNCH = "import sys; from tui.launcher import main; sys.exit(main())"
PHASE_LINE = re.compile(r"^\[\s*([\d.]+)s\] == (.+)$")


def ensure_trained(ws: Path) -> None:
    if list(ws.glob("work_dirs/*/iter_*.pth")):
        return
    ws.mkdir(parents=True, exist_ok=True)
    print(f"training the demo workspace {ws} (run-all, minutes) ...", flush=True)
    done = subprocess.run(
        [PY, "-c", LAUNCH, "--workspace", str(ws), "run-all", "--name", "伍鲜同志"],
        cwd=ws,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"run-all failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def export_tree(ref: str, dest: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "engine", "tui"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def one_merge(ws: Path, pythonpath: str | None) -> tuple[float, int, dict[str, float]]:
    """(wall seconds, python children started, seconds per phase) of one merge command."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    done = subprocess.run(
        [PY, "-c", LAUNCH, "--workspace", str(ws), "merge", "--keep", "1"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"merge failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    log = (ws / ".wizard" / "merge.log").read_text(encoding="utf-8", errors="replace")
    children = sum(1 for line in log.splitlines() if line.startswith(f"$ {PY} "))
    marks = [
        (float(m.group(1)), m.group(2))
        for m in map(PHASE_LINE.match, done.stdout.splitlines())
        if m
    ]
    phases = {
        title: later - at
        for (at, title), (later, _) in zip(marks, marks[1:] + [(wall, "end")], strict=True)
    }
    return wall, children, phases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", default="HEAD", help="git ref of the older code (default HEAD)")
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/merge-speed/ws"))
    args = ap.parse_args()
    ws = args.workspace.resolve()
    ensure_trained(ws)
    with tempfile.TemporaryDirectory(prefix="merge-speed-before-") as tmp:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", args.before],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        variants = {f"before ({commit})": str(export_tree(args.before, Path(tmp))), "after": None}
        names = list(variants)
        results: dict[str, list[tuple[float, int, dict[str, float]]]] = {n: [] for n in names}
        one_merge(ws, None)  # warm the page cache (and check it works) before timing
        for i in range(args.runs):
            for name in names if i % 2 == 0 else names[::-1]:
                res = one_merge(ws, variants[name])
                results[name].append(res)
                print(f"run {i + 1} {name}: {res[0]:.2f} s, {res[1]} python children", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)\n")
    print("| code | python children | runs, s | median, s |")
    print("|---|---|---|---|")
    for name in names:
        walls = [w for w, _, _ in results[name]]
        kids = sorted({c for _, c, _ in results[name]})
        runs = ", ".join(f"{w:.2f}" for w in walls)
        print(f"| {name} | {'/'.join(map(str, kids))} | {runs} | {statistics.median(walls):.2f} |")
    print("\nmedian seconds per phase (from the command's own timestamps; last: to exit):\n")
    titles = list(dict.fromkeys(t for n in names for _, _, ph in results[n] for t in ph))
    print("| phase | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for title in titles:
        cells = []
        for name in names:
            vals = [ph[title] for _, _, ph in results[name] if title in ph]
            cells.append(f"{statistics.median(vals):.2f}" if vals else "-")
        print(f"| {title} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
