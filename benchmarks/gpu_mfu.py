"""The auto profile's throughput (MFU) on the 1.89B InternLM2 shape, variant by variant (issue 15).

Run by ``benchmarks/gpu_mfu.sh`` on the GPU machine. For each variant: render the auto config
through the wizard's engine (``render_config``, variant settings as ``--set`` overrides), then
``python -m xtuner.tools.train`` for ``max_iters`` iterations with seed 0, a log line and an
unsmoothed loss per iteration (``log_processor.window_size=1``). This script's
:func:`profile_iteration` (one line put into the benchmark's copy of the config) times every
iteration with a CUDA sync (wall, perf_counter) and records one iteration under
torch.profiler (top CUDA ops) and the peak memory.

Writes OUT/mfu.json, OUT/mfu.md, OUT/<variant>.log and OUT/profile-<variant>.txt.
Locally: ``CPU=1 bash benchmarks/gpu_mfu.sh`` (demo model, 3 iterations: the control flow).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

BF16_PEAK = 989e12  # dense bf16, H100/H200 SXM datasheet


# -- runs inside xtuner's training process (one line of the benchmark's config) ------------
def profile_iteration(at: int, out: str) -> None:
    """Time each training iteration (CUDA-synchronised) and profile iteration ``at``."""
    import torch
    from mmengine.runner import loops

    state = {"n": 0, "times": [], "t": None}
    path = Path(out)

    def wrap(cls: type) -> None:
        original = cls.run_iter

        def run_iter(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            state["n"] += 1
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            if state["n"] == at:
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                with profile(activities=acts) as prof:
                    result = original(self, *args, **kwargs)
                    if cuda:
                        torch.cuda.synchronize()
                key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
                try:
                    table = prof.key_averages().table(sort_by=key, row_limit=45)
                except Exception:  # noqa: BLE001 - newer torch names it device time
                    table = prof.key_averages().table(
                        sort_by="self_device_time_total" if cuda else key, row_limit=45
                    )
                (path.parent / f"profile-{path.stem}.txt").write_text(table)
            else:
                result = original(self, *args, **kwargs)
            if cuda:
                torch.cuda.synchronize()
            state["times"].append(time.perf_counter() - t0)
            rec = {
                "times": state["times"],
                "peak_gib": (torch.cuda.max_memory_allocated() / 2**30) if cuda else None,
                "reserved_gib": (torch.cuda.max_memory_reserved() / 2**30) if cuda else None,
            }
            path.write_text(json.dumps(rec))
            return result

        cls.run_iter = run_iter

    wrap(loops.IterBasedTrainLoop)
    if "run_iter" in vars(loops.EpochBasedTrainLoop):
        wrap(loops.EpochBasedTrainLoop)


# -- the driver ------------------------------------------------------------------------------
# name: (overrides, install(...) arguments or None, iterations); "base" is today's auto run.
VARIANTS: dict[str, tuple[dict, str | None, int]] = {
    "base": ({"fused_kernels": False, "lora_dropout": 0.1}, None, 50),
    "fast": ({"fused_kernels": True, "lora_dropout": 0.0}, "", 50),
    "noaddmm": ({"fused_kernels": True, "lora_dropout": 0.0}, "lora_addmm=False", 30),
    "cast": (
        {"fused_kernels": True, "lora_dropout": 0.0},
        "rms_norm=False, swiglu=False, rope=False, fused_ce=False, lora_addmm=False",
        30,
    ),
    "nofce": ({"fused_kernels": True, "lora_dropout": 0.0}, "fused_ce=False", 30),
    "drop0": ({"fused_kernels": False, "lora_dropout": 0.0}, None, 30),
    "compile": ({"fused_kernels": True, "lora_dropout": 0.0}, "compile_layers=True", 30),
    "fast_b16": (
        {"fused_kernels": True, "lora_dropout": 0.0, "batch_size": 16, "accumulative_counts": 1},
        "",
        26,
    ),
}


def bench_config(text: str, install_args: str | None, timing: Path, profile_at: int) -> str:
    from engine.config.render import ConfigSource
    from engine.config.settings import FUSED_KERNELS_PATCH

    src = ConfigSource(text)
    src.set_kw(("log_processor",), "window_size", 1)
    src.set_kw(("randomness",), "seed", 0)
    out = src.text
    if install_args:
        patched = FUSED_KERNELS_PATCH.replace(".install()", f".install({install_args})")
        out = out.replace(FUSED_KERNELS_PATCH, patched)
    line = (
        f'__import__("sys").path.insert(0, {str(HERE)!r}) or '
        f'__import__("gpu_mfu").profile_iteration({profile_at}, {str(timing)!r})\n'
    )
    return line + out


def parse_losses(log: Path) -> list[tuple[int, float]]:
    from engine.runs.logparse import parse_log_line

    losses = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        rec = parse_log_line(line)
        if rec and rec.get("kind") == "iter" and rec.get("mode") == "train" and "loss" in rec:
            losses.append((int(rec["iter"]), float(rec["loss"])))
    return losses


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-mfu"))
    ap.add_argument("--work", default="/tmp/gpu-mfu-work")
    ap.add_argument("--variants", default=os.environ.get("VARIANTS", ",".join(VARIANTS)))
    ap.add_argument("--deadline", type=float, default=float(os.environ.get("DEADLINE", "540")))
    ap.add_argument("--n", type=int, default=int(os.environ.get("N", "8000")))
    ap.add_argument("--cpu", action="store_true", help="demo model, 3 iterations")
    args = ap.parse_args()
    t_start = time.monotonic()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    from gpu_profiles import build_big, write_dataset

    from engine.config import detect_hardware, render_config, write_config
    from engine.config.estimate import Plan, flops_per_token, model_size
    from engine.demo import build_demo_model, is_complete
    from engine.workspace import Workspace
    from engine.xtuner_env import TRAIN_MODULE, child_env, module_command

    hw = detect_hardware()
    print(f"hardware: {hw.describe()}", flush=True)
    demo = work / "demo-model"
    if not is_complete(demo):
        shutil.rmtree(demo, ignore_errors=True)
        build_demo_model(demo)
    if args.cpu:
        model = demo
    else:
        t0 = time.monotonic()
        model = build_big(demo, work / "internlm2-1_8b-random", "cuda")
        print(f"1.89B model: {time.monotonic() - t0:.1f} s", flush=True)
    data = write_dataset(work / "datas" / "assistant.json", 50 if args.cpu else args.n)
    size = model_size(model)
    gib = hw.gpus[0].total_gib if hw.gpus else 0.0

    results = []
    for name in [v for v in args.variants.split(",") if v]:
        overrides, install_args, iters = VARIANTS[name]
        if args.cpu:
            iters = 3
        if name == "fast_b16" and gib and results:
            fast = next((r for r in results if r["variant"] == "fast"), None)
            # twice fast's activations must fit: its peak less the ~4 GiB of bf16 weights
            if fast and 2 * (fast.get("peak_gib") or gib) - 4 > 0.92 * gib:
                print(f"{name}: skipped (fast's peak {fast.get('peak_gib')} GiB)", flush=True)
                continue
        left = args.deadline - (time.monotonic() - t_start)
        need = 30 + iters * 0.7
        if left < need:
            print(f"{name}: skipped ({left:.0f} s left, needs ~{need:.0f})", flush=True)
            continue
        rendered = render_config(
            model_path=str(model),
            data_path=str(data),
            profile="auto",
            hardware=hw,
            overrides={**overrides, "max_iters": iters, "logger_interval": 1, "max_new_tokens": 4},
        )
        s = rendered.settings
        ws = Workspace(work / f"ws-{name}").ensure()
        cfg = write_config(ws, rendered, force=True)
        timing = out / f"{name}.json"
        cfg.write_text(bench_config(cfg.read_text(), install_args, timing, min(20, iters)))
        shutil.copyfile(cfg, out / f"{name}-config.py")
        log = out / f"{name}.log"
        wd = work / f"wd-{name}"
        shutil.rmtree(wd, ignore_errors=True)
        cmd = module_command(TRAIN_MODULE, str(cfg), "--work-dir", str(wd))
        t0 = time.monotonic()
        code = 0
        with open(log, "w", encoding="utf-8") as fh:
            try:
                code = subprocess.run(
                    cmd,
                    cwd=cfg.parent,
                    env=child_env(),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    timeout=max(20, min(left - 5, need + 60)),
                    start_new_session=True,
                ).returncode
            except subprocess.TimeoutExpired:
                code = 124
        wall = time.monotonic() - t0
        rec = json.loads(timing.read_text()) if timing.is_file() else {"times": []}
        times = rec["times"]
        tokens = s["batch_size"] * s["max_length"]
        steady = sorted(times[5:]) if len(times) > 8 else sorted(times)
        med = statistics.median(steady) if steady else None
        plan = Plan(
            s["quantization"],
            str(s["torch_dtype"]),
            s["lora_r"],
            s["batch_size"],
            s["max_length"],
            bool(s["use_activation_checkpointing"]),
            "sdpa" if s["attn_implementation"] == "sdpa" else "eager",
        )
        fpt = flops_per_token(size, plan)
        row = {
            "variant": name,
            "exit": code,
            "wall_s": round(wall, 1),
            "batch": s["batch_size"],
            "acc": s["accumulative_counts"],
            "lora_dropout": s["lora_dropout"],
            "fused_kernels": s["fused_kernels"],
            "install": install_args,
            "iters_timed": len(times),
            "gflop_per_token": round(fpt / 1e9, 2),
            "s_per_iter": round(med, 4) if med else None,
            "tokens_per_s": round(tokens / med) if med else None,
            "mfu": round(tokens / med * fpt / BF16_PEAK, 4) if med else None,
            "peak_gib": round(rec["peak_gib"], 2) if rec.get("peak_gib") else None,
            "reserved_gib": round(rec["reserved_gib"], 2) if rec.get("reserved_gib") else None,
            "losses": parse_losses(log),
            "times": [round(t, 4) for t in times],
        }
        kern = [ln for ln in log.read_text(errors="replace").splitlines() if "kernels:" in ln]
        row["kernels_log"] = kern[-1][-160:] if kern else None
        results.append(row)
        print(
            json.dumps({k: v for k, v in row.items() if k not in ("losses", "times")}), flush=True
        )
        (out / "mfu.json").write_text(json.dumps(results, indent=1))

    base = next((r for r in results if r["variant"] == "base"), None)
    base_loss = dict(base["losses"]) if base else {}
    lines = [
        f"# auto profile variants, {hw.describe()}, {size.params / 1e9:.2f}B, "
        f"{results[0]['gflop_per_token'] if results else '-'} GFLOP/token",
        "",
        "| variant | batch x acc | exit | s/iter | tokens/s | MFU | peak GiB | max loss diff vs base |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        diffs = []
        for i, loss in r["losses"]:
            if r["batch"] == (base or {}).get("batch") and i in base_loss:
                diffs.append(abs(loss - base_loss[i]) / base_loss[i])
            elif base and r["batch"] == 2 * base["batch"]:
                pair = [base_loss.get(2 * i - 1), base_loss.get(2 * i)]
                if None not in pair:
                    ref = sum(pair) / 2
                    diffs.append(abs(loss - ref) / ref)
        diff = f"{100 * max(diffs):.2f}% ({len(diffs)} it)" if diffs else "-"
        lines.append(
            f"| {r['variant']} | {r['batch']} x {r['acc']} | {r['exit']} | {r['s_per_iter']} "
            f"| {r['tokens_per_s']} | {r['mfu']} | {r['peak_gib']} | {diff} |"
        )
    (out / "mfu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
