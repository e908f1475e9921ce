"""Render the qlora / lora (and auto) profiles and train each for a few iterations on a GPU.

Run by ``benchmarks/gpu_profiles.sh`` on the H200 machine (see there); also runnable locally
with ``--dry-run`` (builds the models' folders and renders the configs, trains nothing) to
check everything but the GPU part.

Models: the demo model (engine.demo) and a random InternLM2 with internlm2-chat-1_8b's
dimensions (1.89B parameters; xtuner's own modelling code, the demo tokenizer). Data: the
tutorial's dataset (n=8000 -> 16,002 records; packed to 2048 it fills real batches).
Per run: peak memory (mmengine's ``memory:`` field, MB), seconds per iteration (last logged
iteration), tokens/s (batch x max_length / time), all written to OUT/summary.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.config import detect_hardware, render_config, write_config  # noqa: E402
from engine.config.estimate import Plan, model_size, peak_memory  # noqa: E402
from engine.workspace import Workspace  # noqa: E402

BIG_DIMS = {
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "intermediate_size": 8192,
    "vocab_size": 92544,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000,
}


def build_big(demo: Path, out: Path, device: str) -> Path:
    """A random 1.89B InternLM2 with the demo's tokenizer and xtuner's modelling code."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (out / "model.safetensors.index.json").exists() or (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for f in demo.iterdir():
        if (
            f.is_file()
            and not f.name.startswith("model.safetensors")
            and f.name != "demo-model.json"
        ):
            shutil.copyfile(f, out / f.name)
    cfg = json.loads((demo / "config.json").read_text())
    cfg.update(BIG_DIMS)
    cfg["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    config = AutoConfig.from_pretrained(str(out), trust_remote_code=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            config, trust_remote_code=True, torch_dtype=torch.bfloat16
        )
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="2GB")
    (out / "config.json").write_text(json.dumps(cfg, indent=2))  # keep ours
    del model
    return out


def write_dataset(path: Path, n: int) -> Path:
    from engine.data.generate import generate_tutorial

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(generate_tutorial("伍鲜同志", n), ensure_ascii=False), encoding="utf-8"
    )
    return path


def train(cfg: Path, work_dir: Path, log: Path, timeout: int) -> tuple[int, float]:
    from engine.xtuner_env import TRAIN_MODULE, child_env, module_command

    cmd = module_command(TRAIN_MODULE, str(cfg), "--work-dir", str(work_dir))
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        try:
            proc = subprocess.run(
                cmd,
                cwd=cfg.parent,
                env=child_env(),
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                start_new_session=True,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.monotonic() - start


def parse_log(log: Path) -> dict:
    iters = []
    from engine.runs.logparse import parse_log_line

    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        rec = parse_log_line(line)
        if rec and rec["kind"] == "iter" and rec.get("mode") == "train" and "iter" in rec:
            memory = rec.get("memory")
            iters.append(
                {
                    "iter": rec["iter"],
                    "max": rec["max_iters"],
                    "time": float(rec["time"]),
                    "memory_mb": int(memory) if isinstance(memory, (int, float)) else None,
                }
            )
    return {"iters": iters}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-profiles"))
    ap.add_argument("--work", default="/tmp/gpu-profiles-work")
    ap.add_argument("--iters", type=int, default=int(os.environ.get("ITERS", "2")))
    ap.add_argument("--big-iters", type=int, default=int(os.environ.get("BIG_ITERS", "4")))
    ap.add_argument("--profiles", default=os.environ.get("PROFILES", "qlora,lora"))
    ap.add_argument("--models", default=os.environ.get("MODELS", "demo,big"))
    ap.add_argument("--timeout", type=int, default=240)
    ap.add_argument("--dry-run", action="store_true", help="render configs only, train nothing")
    args = ap.parse_args()

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    (out / "configs").mkdir(exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    hw = detect_hardware()
    print(f"hardware: {hw.describe()} (via {hw.source})", flush=True)

    from engine.demo import build_demo_model, is_complete

    t0 = time.monotonic()
    demo = work / "demo-model"
    if not is_complete(demo):
        shutil.rmtree(demo, ignore_errors=True)
        build_demo_model(demo)
    print(f"demo model: {time.monotonic() - t0:.1f} s", flush=True)
    models = {"demo": demo}
    if "big" in args.models.split(","):
        t0 = time.monotonic()
        device = "cpu" if args.dry_run or not hw.gpus else "cuda"
        if args.dry_run:  # only the folder's config: sizes are all the renderer reads
            big = work / "internlm2-1_8b-random"
            big.mkdir(exist_ok=True)
            cfg = json.loads((demo / "config.json").read_text())
            cfg.update(BIG_DIMS)
            (big / "config.json").write_text(json.dumps(cfg, indent=2))
        else:
            big = build_big(demo, work / "internlm2-1_8b-random", device)
        print(f"1.89B model: {time.monotonic() - t0:.1f} s", flush=True)
        models["big"] = big
    data_small = write_dataset(work / "datas" / "small.json", 50)
    data_big = write_dataset(work / "datas" / "assistant.json", 8000)

    results = []
    for model_name in args.models.split(","):
        model = models[model_name]
        for profile in [p for p in args.profiles.split(",") if p] + ["auto"]:
            iters = args.iters if model_name == "demo" else args.big_iters
            rendered = render_config(
                model_path=str(model),
                data_path=str(data_small if model_name == "demo" else data_big),
                profile=profile,
                hardware=hw,
                overrides={"max_iters": iters, "max_new_tokens": 16, "logger_interval": 1},
            )
            ws = Workspace(work / f"ws-{model_name}-{profile}").ensure()
            cfg = write_config(ws, rendered, force=True)
            shutil.copyfile(cfg, out / "configs" / f"{model_name}-{profile}.py")
            s = rendered.settings
            row = {
                "model": model_name,
                "profile": profile,
                "resolved": rendered.profile,
                "notes": rendered.notes,
                "batch_size": s["batch_size"],
                "accumulative_counts": s["accumulative_counts"],
                "max_length": s["max_length"],
                "quantization": s["quantization"],
                "attn": s["attn_implementation"],
                "ckpt": s["use_activation_checkpointing"],
            }
            size = model_size(model)
            plan = Plan(
                s["quantization"],
                str(s["torch_dtype"]),
                s["lora_r"],
                s["batch_size"],
                s["max_length"],
                bool(s["use_activation_checkpointing"]),
                "sdpa" if s["attn_implementation"] == "sdpa" else "eager",
            )
            row["estimated_peak_gib"] = round(peak_memory(size, plan).total, 2)
            print(
                f"{model_name}/{profile} -> {rendered.profile}: {'; '.join(rendered.notes)}",
                flush=True,
            )
            if profile == "auto" or args.dry_run:
                results.append(row)  # auto renders qlora or lora: already trained above
                continue
            log = out / f"{model_name}-{profile}.log"
            code, wall = train(cfg, work / f"wd-{model_name}-{profile}", log, args.timeout)
            parsed = parse_log(log)
            row.update(exit_code=code, wall_s=round(wall, 1), iters=parsed["iters"])
            last = parsed["iters"][-1] if parsed["iters"] else None
            if last:
                row["s_per_iter"] = last["time"]
                row["tokens_per_s"] = round(s["batch_size"] * s["max_length"] / last["time"])
                mems = [i["memory_mb"] for i in parsed["iters"] if i["memory_mb"]]
                row["peak_gib"] = round(max(mems) / 1024, 2) if mems else None
            print(json.dumps({k: v for k, v in row.items() if k != "iters"}), flush=True)
            results.append(row)

    (out / "summary.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    lines = [
        f"# GPU profiles ({hw.describe()})",
        "",
        "| model | profile | -> | batch x len | acc | quant | attn | ckpt | exit | s/iter | tokens/s | peak GiB | est. GiB | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['profile']} | {r['resolved']} | {r['batch_size']} x {r['max_length']} "
            f"| {r['accumulative_counts']} | {r['quantization']} | {r['attn']} | {r['ckpt']} "
            f"| {r.get('exit_code', '-')} | {r.get('s_per_iter', '-')} | {r.get('tokens_per_s', '-')} "
            f"| {r.get('peak_gib', '-')} | {r['estimated_peak_gib']} | {r.get('wall_s', '-')} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = [r for r in results if r.get("exit_code") not in (None, 0)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
