"""A stand-in for `python -m xtuner.tools.train` that replays a recorded real run.

``python tests/replay_trainer.py CONFIG --work-dir DIR [--resume PTH]`` writes what xtuner 0.2.0
and mmengine wrote in a real demo run (tests/data/train_run: its mmengine log, line by line) into
DIR the way they write it: ``<timestamp>/<timestamp>.log``, ``vis_data/scalars.json``, and at
each "Saving checkpoint at N iterations" an ``iter_N.pth`` (a zip archive, as torch.save writes)
and ``last_checkpoint``; the same lines go to stdout (the supervisor's train.log). Only xtuner is
stood in for: the supervisor, records, monitor and control that tests drive are the real ones.

The test sets the pace, never the clock: with ``REPLAY_HOLD_AT=1,32`` the replay stops before
iteration N's line, creates ``DIR/replay.held.N`` and waits until ``DIR/replay.release.N``
exists. ``REPLAY_CKPT_BYTES`` sizes each checkpoint (default 64 KiB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

SOURCE = next(
    (Path(__file__).parent / "data" / "train_run" / "workspace" / "work_dirs").glob("*/2*/2*.log")
)
ITER = re.compile(r"Iter\(train\) \[\s*(\d+)/(\d+)\]")
FIELD = re.compile(r"(\w+): ([-\d.e]+)")
SAVE = re.compile(r"Saving checkpoint at (\d+) iterations")


def replay_argv(plan):
    """In place of ``engine.distributed.train_env_and_argv``: this replay's argv (the `replay`
    fixture and child processes of tests patch ``engine.runs.launch`` with it)."""
    from engine.distributed import _train_tail

    return {}, [sys.executable, str(Path(__file__).resolve()), *_train_tail(plan)]


def held(record, it: int) -> bool:
    """The replay of ``record``'s run waits before iteration ``it`` (REPLAY_HOLD_AT)."""
    return (Path(record.work_dir) / f"replay.held.{it}").exists()


def release(record, it: int) -> None:
    (Path(record.work_dir) / f"replay.release.{it}").touch()


def hold(work_dir: Path, it: int, holds: set[int]) -> None:
    if it not in holds:
        return
    (work_dir / f"replay.held.{it}").touch()
    release = work_dir / f"replay.release.{it}"
    while not release.exists():
        time.sleep(0.02)


def save_checkpoint(work_dir: Path, it: int, size: int) -> None:
    path = work_dir / f"iter_{it}.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        with archive.open("archive/data.pkl", "w") as member:
            chunk = b"\0" * 65536
            left = size
            while left > 0:
                member.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    (work_dir / "last_checkpoint").write_text(str(path), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--launcher", default="none")
    args, _ = parser.parse_known_args()
    work_dir = Path(args.work_dir)
    holds = {int(x) for x in os.environ.get("REPLAY_HOLD_AT", "").split(",") if x.strip()}
    size = int(os.environ.get("REPLAY_CKPT_BYTES", 65536))
    start_after = 0
    if args.resume:
        m = re.search(r"iter_(\d+)\.pth", args.resume)
        start_after = int(m.group(1)) if m else 0
    stamp = time.strftime("%Y%m%d_%H%M%S")
    folder = work_dir / stamp
    (folder / "vis_data").mkdir(parents=True, exist_ok=True)
    log = open(folder / f"{stamp}.log", "a", encoding="utf-8")  # noqa: SIM115
    scalars = open(folder / "vis_data" / "scalars.json", "a", encoding="utf-8")  # noqa: SIM115
    current = 0

    def emit(line: str) -> None:
        log.write(line + "\n")
        log.flush()
        print(line[5:] if line[:4].isdigit() else line, flush=True)  # console: no year

    if start_after:
        emit(time.strftime("%Y/%m/%d %H:%M:%S") + " - mmengine - INFO - "
             f"resumed epoch: 0, iter: {start_after}")  # fmt: skip
    for line in SOURCE.read_text(encoding="utf-8").splitlines():
        it = ITER.search(line)
        if it:
            current = int(it.group(1))
            if current <= start_after:
                continue
            hold(work_dir, current, holds)
            emit(line)
            values = {k: float(v) for k, v in FIELD.findall(line.split("]", 1)[1])}
            values.update(iter=current, step=current)
            scalars.write(json.dumps(values) + "\n")
            scalars.flush()
            continue
        if current and current <= start_after:
            continue
        saved = SAVE.search(line)
        emit(line)
        if saved:
            save_checkpoint(work_dir, int(saved.group(1)), size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
