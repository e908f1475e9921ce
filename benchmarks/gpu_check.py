"""On a GPU machine: the GPU sampler, the environment checks and the GPU panel, for real.

    python3 benchmarks/gpu_check.py --out DIR

Samples NVML (engine.gpu) while a matmul loop keeps the GPU busy, renders the Train screen's
GPU panel (tui.widgets.gpu_panel) from those samples to DIR/gpu_panel.svg, and writes the
environment checks (engine.envcheck) as DIR/doctor.json. No GPU: the sampler returns nothing
and the panel shows only the CPU/RAM line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.envcheck import run_checks  # noqa: E402
from engine.gpu import GpuSampler  # noqa: E402
from engine.workspace import Workspace  # noqa: E402


def busy_gpu(stop: threading.Event, ready: threading.Event) -> None:
    import torch

    if not torch.cuda.is_available():
        ready.set()
        return
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ready.set()
    while not stop.is_set():
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


async def render_panel(samples, out: Path) -> str:
    from textual.app import App

    from tui.widgets.gpu_panel import GpuPanel, gpu_line

    class PanelApp(App):
        def compose(self):
            yield GpuPanel()

    app = PanelApp()
    async with app.run_test(size=(100, 6)) as pilot:
        panel = app.query_one(GpuPanel)
        panel.show(samples, 42.0, 3.1, 125.0)
        await pilot.pause()
        app.save_screenshot(str(out / "gpu_panel.svg"))
    return "\n".join(gpu_line(s) for s in samples)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sampler = GpuSampler()
    stop = threading.Event()
    ready = threading.Event()
    worker = threading.Thread(target=busy_gpu, args=(stop, ready), daemon=True)
    worker.start()
    ready.wait(timeout=120)  # sample while the GPU is busy, not while torch imports
    rows = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        s0 = time.perf_counter()
        samples = sampler.sample()
        rows.append(
            {
                "t": round(s0 - t0, 2),
                "batch_ms": round((time.perf_counter() - s0) * 1e3, 2),
                "gpus": [asdict(s) for s in samples],
            }
        )
        time.sleep(1.0)
    stop.set()
    worker.join(timeout=30)
    (args.out / "gpu_samples.json").write_text(json.dumps(rows, indent=1))
    last = sampler.sample() if not rows or not rows[-1]["gpus"] else None
    from engine.gpu import GpuSample

    busiest = max(
        rows, key=lambda r: sum((g["util_pct"] or 0) for g in r["gpus"]) if r["gpus"] else 0
    )
    samples = [GpuSample(**g) for g in busiest["gpus"]] if busiest["gpus"] else (last or [])
    print("samples:", len(rows), "batch ms:", [r["batch_ms"] for r in rows])
    print(asyncio.run(render_panel(samples, args.out)))
    ws = Workspace(args.out / "ws").ensure()
    checks = run_checks(ws)
    (args.out / "doctor.json").write_text(
        json.dumps([asdict(c) for c in checks], indent=1, ensure_ascii=False)
    )
    for c in checks:
        print(f"{c.status:5} {c.name:22} {c.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
