"""What the Train screen costs on the wire, and what it costs the training.

    .venv/bin/python benchmarks/wire_bytes.py [--iters 96] [--repeat 1] [--out DIR]

For each round it prepares a workspace (demo model, the tutorial's dataset, a CPU config),
then:

1. headless: starts a demo run (``engine.runs.launch.start_run``, detached) and waits for it;
2. attached: starts the same run again in a fresh workspace and, while it trains, runs the
   wizard (``.venv/bin/xtuner-wizard --workspace WS``, opened on the Train step) under
   ``pty.fork()`` in a 120x40 terminal (``TIOCSWINSZ`` before the program starts, as an SSH
   session sets it), counting every byte the terminal receives until the run has ended;
   once with ``--low-bandwidth`` (what an SSH session gets) and once without.

It reports the first paint (bytes from the start to 2 s after the first frame), the average bytes/s
after that, the bytes/s of the raw training log over the same run (the trainer's stdout+stderr
as the supervisor writes it, and mmengine's own .log), and the mean iteration time (from
``vis_data/scalars.json``) headless vs attached. Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.pty_probe import run_in_pty  # noqa: E402

WIZARD = ROOT / ".venv" / "bin" / "xtuner-wizard"
FIRST_PAINT_S = 2.0


def _run_finished(ws) -> bool:
    from engine.runs.control import refresh
    from engine.runs.records import list_runs

    runs = list_runs(ws)
    return bool(runs) and not refresh(runs[-1]).active


def _iteration_times(work_dir: Path) -> list[float]:
    times = []
    for scalars in sorted(work_dir.glob("*/vis_data/scalars.json")):
        for line in scalars.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "time" in rec and "loss" in rec:
                times.append(float(rec["time"]))
    return times


def _log_stats(record) -> dict:
    """Bytes of the raw log streams and the span of the training they cover."""
    work_dir = Path(record.work_dir)
    mm_logs = sorted(work_dir.glob("*/*.log"))
    run_log = Path(record.log_path)
    span = (record.ended or time.time()) - (record.started or time.time())
    return {
        "run_seconds": round(span, 1),
        "stdout_log_bytes": run_log.stat().st_size if run_log.exists() else 0,
        "mmengine_log_bytes": sum(p.stat().st_size for p in mm_logs),
    }


def training_window(work_dir: Path) -> tuple[float, float] | None:
    """Wall-clock seconds (epoch) of the first and the last logged training iteration."""
    from engine.runs.logparse import parse_log_line

    stamps = []
    for log in sorted(work_dir.glob("*/*.log")):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            rec = parse_log_line(line)
            if rec and rec["kind"] == "iter" and rec.get("mode") == "train":
                stamps.append(rec["logged_at"][-14:])  # "MM/DD HH:MM:SS" (the year dropped)
    if not stamps:
        return None
    year = time.localtime().tm_year

    def epoch(stamp: str) -> float:
        return time.mktime(time.strptime(f"{year}/{stamp}", "%Y/%m/%d %H:%M:%S"))

    return epoch(stamps[0]), epoch(stamps[-1]) + 1.0  # the log has whole seconds


def _bytes_logged_between(work_dir: Path, start: float, end: float) -> int:
    from engine.runs.logparse import parse_log_line

    year = time.localtime().tm_year
    total = 0
    for log in sorted(work_dir.glob("*/*.log")):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
            rec = parse_log_line(line)
            if not rec:
                continue
            t = time.mktime(time.strptime(f"{year}/{rec['logged_at'][-14:]}", "%Y/%m/%d %H:%M:%S"))
            if start <= t < end:
                total += len(line.encode())
    return total


def one_run(base: Path, model: Path, iters: int, mode: str) -> dict:
    """mode: headless | attached | attached-low (the wizard with --low-bandwidth)."""
    from train_support import prepare_workspace, wait_for

    from engine.runs.launch import start_run
    from engine.runs.records import list_runs

    ws = prepare_workspace(base / f"ws-{mode}", model_dir=model, overrides={"max_iters": iters})
    ws.update_state(current_step="train")
    record = start_run(ws, ws.load_state().choices["config"])
    out: dict = {"mode": mode, "run": record.id}
    if mode == "headless":
        wait_for(lambda: _run_finished(ws), timeout=1800, every=1.0)
    else:
        argv = [str(WIZARD), "--workspace", str(ws.root)]
        env = dict(os.environ, TERM="xterm-256color")
        for key in (
            "SSH_CONNECTION",
            "SSH_TTY",
            "TEXTUAL_COLOR_SYSTEM",
            "TEXTUAL_ANIMATIONS",
            "COLUMNS",
            "LINES",
        ):
            env.pop(key, None)
        if mode == "attached-low":
            argv.append("--low-bandwidth")
        else:
            env["COLORTERM"] = "truecolor"  # a local terminal: Textual's full colour
        finished_at: list[float] = []

        def stop_when(elapsed: float) -> bool:
            if not finished_at and int(elapsed * 20) % 20 == 0 and _run_finished(ws):
                finished_at.append(elapsed)
            return bool(finished_at) and elapsed > finished_at[0] + 3.0

        wall0 = time.time()
        cap = run_in_pty(argv, env=env, cols=120, rows=40, duration=1800, stop_when=stop_when)
        # the first frame: the first sizeable write (the terminal set-up codes come earlier,
        # while Python is still importing)
        first = next((t for t, n in cap.chunks if n > 1000), cap.chunks[0][0] if cap.chunks else 0)
        first -= 0.01
        end = finished_at[0] + 3.0 if finished_at else (cap.chunks[-1][0] if cap.chunks else 0)
        after = max(1e-9, end - (first + FIRST_PAINT_S))
        out.update(
            first_paint_bytes=cap.bytes_between(0, first + FIRST_PAINT_S),
            after_bytes=cap.bytes_between(first + FIRST_PAINT_S, end + 1e-9),
            after_seconds=round(after, 1),
            total_bytes=cap.total,
            screen_seconds=round(end, 1),
            screen_cpu_seconds=round(cap.cpu_seconds or 0.0, 2),
        )
        out["after_bytes_per_s"] = round(out["after_bytes"] / after, 1)
        # what the screen takes from the machine once it is up: its CPU after the first paint
        steady = cap.cpu_between(first + FIRST_PAINT_S, end)
        if steady is not None:
            out["screen_cpu_after_first_paint_s"] = round(steady, 2)
            out["screen_cpu_after_first_paint_pct_of_a_core"] = round(100 * steady / after, 2)
        (base / f"screen-{mode}.raw").write_bytes(bytes(cap.raw))
        (base / f"screen-{mode}.chunks.json").write_text(
            json.dumps({"wall0": wall0, "chunks": cap.chunks})
        )
        # the screen's bytes while the trainer logged iterations (start-up excluded)
        window = training_window(Path(list_runs(ws)[-1].work_dir))
        if window:
            t0, t1 = window[0] - wall0, window[1] - wall0
            t0 = max(t0, first + FIRST_PAINT_S)
            if t1 > t0:
                out["training_seconds"] = round(t1 - t0, 1)
                out["training_bytes_per_s"] = round(cap.bytes_between(t0, t1) / (t1 - t0), 1)
    record = list_runs(ws)[-1]
    out["state"] = record.state
    out.update(_log_stats(record))
    times = _iteration_times(Path(record.work_dir))
    out["iterations"] = len(times)
    if times:
        steady = times[1:] if len(times) > 2 else times  # the first iteration warms up
        out["mean_iter_s"] = round(statistics.fmean(steady), 4)
        out["median_iter_s"] = round(statistics.median(steady), 4)
    span = out["run_seconds"] or 1
    out["stdout_log_bytes_per_s"] = round(out["stdout_log_bytes"] / span, 1)
    out["mmengine_log_bytes_per_s"] = round(out["mmengine_log_bytes"] / span, 1)
    window = training_window(Path(record.work_dir))
    if window:
        # the raw log while it logged iterations: what `tail -f` of it would send
        logged = _bytes_logged_between(Path(record.work_dir), *window)
        out["mmengine_log_training_bytes_per_s"] = round(logged / (window[1] - window[0]), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--modes", default="headless,attached-low,attached", help="comma-separated, in order"
    )
    parser.add_argument("--out", type=Path, default=None, help="keep workspaces and captures")
    parser.add_argument("--model", type=Path, default=None, help="a built demo model to reuse")
    args = parser.parse_args(argv)

    from train_support import build_model

    base = args.out or Path(tempfile.mkdtemp(prefix="wire-bytes-"))
    base.mkdir(parents=True, exist_ok=True)
    model = build_model(args.model or base / "demo-model")
    results = []
    for round_no in range(args.repeat):
        for mode in args.modes.split(","):
            target = base / f"round{round_no}"
            if (target / f"ws-{mode}").exists():
                shutil.rmtree(target / f"ws-{mode}")
            res = one_run(target, model, args.iters, mode)
            res["round"] = round_no
            print(json.dumps(res, ensure_ascii=False), flush=True)
            results.append(res)
    (base / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {base / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
