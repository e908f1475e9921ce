"""How much a RunMonitor costs: the first read of a long run's files, and each later poll.

    .venv/bin/python benchmarks/monitor_poll.py [ITERATIONS]

Builds a work dir from the real captured demo log (tests/data/logs/resumed) stretched to
ITERATIONS iterations (default 10000; an evaluation block every 500), then times RunMonitor.poll():
the first (whole history) and steady polls with nothing new and with one new iteration line.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.runs.monitor import RunMonitor  # noqa: E402

SRC = ROOT / "tests" / "data" / "logs" / "resumed" / "work_dir" / "20261129_023934"
LINE = (
    "2026/11/29 02:40:37 - mmengine - INFO - Iter(train) [{i:>{w}}/{n}]  lr: 2.0000e-04  "
    "eta: 0:10:00  time: 0.2600  data_time: 0.0060  grad_norm: 0.3012  loss: {loss:.4f}\n"
)
SAMPLE = (
    "2026/11/29 02:40:37 - mmengine - INFO - after_train_iter in EvaluateChatHook.\n"
    "2026/11/29 02:40:38 - mmengine - INFO - Sample output:\n<s><|im_start|>user\n"
    "请介绍一下你自己<|im_end|>\n<|im_start|>assistant\n我是小助手<|im_end|>\n\n"
)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    tmp = Path(tempfile.mkdtemp())
    folder = tmp / "20261129_023934"
    (folder / "vis_data").mkdir(parents=True)
    head = (SRC / "20261129_023934.log").read_text(encoding="utf-8").split("Iter(train)")[0]
    head = head.rsplit("\n", 1)[0] + "\n"
    w = len(str(n))
    with (
        open(folder / "20261129_023934.log", "w", encoding="utf-8") as log,
        open(folder / "vis_data" / "scalars.json", "w") as sc,
    ):
        log.write(head)
        for i in range(1, n + 1):
            loss = 2.0 / i**0.3
            log.write(LINE.format(i=i, w=w, n=n, loss=loss))
            sc.write(
                json.dumps({"lr": 2e-4, "loss": loss, "time": 0.26, "iter": i, "step": i}) + "\n"
            )
            if i % 500 == 0:
                log.write(SAMPLE)
    size = (folder / "20261129_023934.log").stat().st_size
    mon = RunMonitor(tmp)
    t = time.perf_counter()
    snap = mon.poll()
    first = time.perf_counter() - t
    assert len(snap.losses) == n
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        mon.poll()
    idle = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        with open(folder / "20261129_023934.log", "a", encoding="utf-8") as log:
            log.write(LINE.format(i=n, w=w, n=n, loss=0.1))
        mon.poll()
    one = (time.perf_counter() - t) / reps
    print(f"iterations {n}, log {size / 1e6:.1f} MB")
    print(f"first poll (whole history): {first * 1000:.0f} ms")
    print(f"poll, nothing new:          {idle * 1000:.2f} ms")
    print(f"poll, one new line:         {one * 1000:.2f} ms (snapshot rebuilt)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
