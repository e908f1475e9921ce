"""Seconds from Start to iteration 1 of the demo run, and the whole run: this tree against an
older commit (issue 16: dataset preparation sized to the machine).

    .venv/bin/python benchmarks/start_to_iter1.py [--runs 3] [--before REF] [--chat]

Each run is a fresh workspace under ``--root`` (default ``/tmp/start-to-iter1``) holding a copy
of the demo model (built once) and the demo's data (``data generate --style tutorial --n 50``,
102 records), its config written by ``xtuner-wizard config --model demo`` (all three untimed),
then ``xtuner-wizard train`` is timed: the clock starts at its exec (the Train step's Start
calls the same ``start_run``) and the run's console log (``.wizard/runs/ID/train.log``, what
the Train step shows) is polled every 20 ms for the first ``Iter(train) [  1/`` line
(mmengine's own timestamps are whole seconds), then the record for the run's end. ``REF``'s ``engine/`` and
``tui/`` are exported (``git archive``) to a temporary folder and put first on ``PYTHONPATH``
for every command of its runs (this tree runs as installed); the two are interleaved
(A B, B A, ...). Also shown: the config's ``map_num_proc`` and ``max_length``, the
iterations, the last logged loss and (``--chat``) whether ``chat --run`` answers the identity.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
LAUNCH = "import sys; from tui.launcher import main; sys.exit(main())"
NAME = "伍鲜同志"
ANSWER = f"我是{NAME}的小助手"
ITER = re.compile(r"Iter\(train\) \[\s*(\d+)/(\d+)\].*?loss: ([\d.]+)")
FINAL_STATES = ("succeeded", "failed", "stopped", "killed", "lost")  # engine.runs.records
FIRST_ITER = re.compile(r"Iter\(train\) \[\s*1/\d+\]")


def export_tree(ref: str, dest: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "engine", "tui"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def wizard(ws: Path, pythonpath: str | None, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [PY, "-c", LAUNCH, "--workspace", str(ws), *args],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def demo_model(root: Path) -> Path:
    model = root / "demo-model-cache" / "demo-model"
    if not (model / "demo-model.json").is_file():
        ws = root / "demo-model-cache"
        ws.mkdir(parents=True, exist_ok=True)
        wizard(ws, None, "demo-model")
    return model


def config_values(config: Path) -> tuple[int | None, int | None]:
    text = config.read_text(encoding="utf-8")
    procs = re.search(r"map_num_proc=(\d+)", text)
    length = re.search(r"^max_length = (\d+)", text, re.M)
    return (int(procs.group(1)) if procs else None, int(length.group(1)) if length else None)


def one_run(root: Path, label: str, i: int, pythonpath: str | None, chat: bool) -> dict:
    ws = root / f"{label}-{i}"
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    shutil.copytree(demo_model(root), ws / "demo-model")
    wizard(ws, pythonpath, "data", "generate", "--name", NAME, "--style", "tutorial", "--n", "50")
    wizard(ws, pythonpath, "config", "--model", "demo")
    (config,) = ws.glob("*_copy.py")
    procs, length = config_values(config)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    subprocess.run(
        [PY, "-c", LAUNCH, "--workspace", str(ws), "train"],
        cwd=ws,
        env=env,
        check=True,
        capture_output=True,
    )
    returned = time.perf_counter() - start
    runs = ws / ".wizard" / "runs"
    (record_path,) = runs.glob("*.json")
    log = runs / record_path.stem / "train.log"
    first = end = None
    while end is None:
        time.sleep(0.02)
        now = time.perf_counter() - start
        if first is None and log.is_file():
            if FIRST_ITER.search(log.read_text(encoding="utf-8", errors="replace")):
                first = now
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except ValueError:
            continue  # being rewritten
        if record.get("state") in FINAL_STATES:
            end = now
        if now > 900:
            sys.exit(f"{label} run {i}: no end after 900 s ({record_path})")
    if record["state"] != "succeeded":
        sys.exit(f"{label} run {i}: {record['state']}: {record.get('cause')}")
    (mm_log,) = ws.glob("work_dirs/*/*/*.log")
    iters = ITER.findall(mm_log.read_text(encoding="utf-8", errors="replace"))
    result = {
        "label": label,
        "train_returned_s": returned,
        "iter1_s": first,
        "run_s": end,
        "map_num_proc": procs,
        "max_length": length,
        "iterations": int(iters[-1][1]) if iters else 0,
        "first_loss": float(iters[0][2]) if iters else None,
        "last_loss": float(iters[-1][2]) if iters else None,
        "workspace": str(ws),
    }
    if chat:
        said = wizard(
            ws, pythonpath, "chat", "--run", record_path.stem, "--prompt", "请介绍一下你自己"
        )
        result["identity"] = ANSWER in said.stdout
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", default="HEAD", help="git ref of the older code (default HEAD)")
    ap.add_argument("--root", type=Path, default=Path("/tmp/start-to-iter1"))
    ap.add_argument("--chat", action="store_true", help="ask each trained run the identity")
    ap.add_argument("--json", type=Path, help="also write every run's numbers here")
    args = ap.parse_args()
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    demo_model(root)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.before],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"load average at the start: {os.getloadavg()} ({os.cpu_count()} cores)", flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="start-to-iter1-before-") as tmp:
        variants = {f"before ({commit})": str(export_tree(args.before, Path(tmp))), "after": None}
        names = list(variants)
        for i in range(args.runs):
            for name in names if i % 2 == 0 else names[::-1]:
                label = "before" if name.startswith("before") else "after"
                res = one_run(root, label, i, variants[name], args.chat)
                res["label"] = name
                results.append(res)
                print(
                    f"run {i + 1} {name}: Start -> iteration 1 {res['iter1_s']:.2f} s, run "
                    f"{res['run_s']:.2f} s, {res['iterations']} iterations, loss "
                    f"{res['first_loss']} -> {res['last_loss']}, map_num_proc "
                    f"{res['map_num_proc']}, max_length {res['max_length']}"
                    + (f", identity {'yes' if res['identity'] else 'NO'}" if args.chat else ""),
                    flush=True,
                )
    print(f"\nload average at the end: {os.getloadavg()} ({os.cpu_count()} cores)\n")
    print(
        "| code | map_num_proc, max_length | Start -> iteration 1, s (runs) | median | "
        "whole run, s (median) | iterations | last loss (runs) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        mine = [r for r in results if r["label"] == name]
        firsts = [r["iter1_s"] for r in mine]
        shape = f"{mine[0]['map_num_proc'] or '32 (default)'}, {mine[0]['max_length']}"
        print(
            f"| {name} | {shape} | {', '.join(f'{v:.2f}' for v in firsts)} | "
            f"**{statistics.median(firsts):.2f}** | "
            f"{statistics.median(r['run_s'] for r in mine):.2f} | "
            f"{'/'.join(sorted({str(r['iterations']) for r in mine}))} | "
            f"{', '.join(str(r['last_loss']) for r in mine)} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
