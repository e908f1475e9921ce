"""The non-GPU parts of benchmarks/gpu_profiles.py: its log parsing on real mmengine lines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_profiles.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_profiles", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_log_reads_time_and_gpu_memory(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(
        # a CPU line (no memory field) and GPU lines (mmengine adds memory: MB)
        "11/29 01:50:22 - mmengine - INFO - Iter(train) [ 1/96]  lr: 1.0668e-03  eta: 0:00:07"
        "  time: 0.1075  data_time: 0.0027  grad_norm: 0.1457  loss: 0.0423\n"
        "11/29 02:10:01 - mmengine - INFO - Iter(train) [2/4]  lr: 2.0000e-04  eta: 0:00:01"
        "  time: 0.5440  data_time: 0.0100  memory: 78848  grad_norm: 1.2  loss: 11.9\n"
        "not a log line\n",
        encoding="utf-8",
    )
    iters = load().parse_log(log)["iters"]
    assert [(i["iter"], i["max"], i["time"], i["memory_mb"]) for i in iters] == [
        (1, 96, 0.1075, None),
        (2, 4, 0.544, 78848),
    ]
