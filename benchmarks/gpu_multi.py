"""Several GPUs through the wizard: ZeRO-2 on 1 and 2 GPUs, stop, resume, merge (issue 8).

Run by ``benchmarks/gpu_multi.sh`` on the 2-GPU H200 machine (see there). Everything goes
through the wizard's own command line (``python -m tui.launcher ...`` = ``xtuner-wizard ...``):
``config`` renders the profile, ``train --gpus N --deepspeed zero2 --wait`` starts the detached
run (torchrun + DeepSpeed, as ``NPROC_PER_NODE=N xtuner train CFG --deepspeed
deepspeed_zero2``), ``stop``, ``resume``, ``merge``. Between and after runs the process table
and ``nvidia-smi`` are read for anything left behind.

Phases:
  speed MODEL      train MODEL (demo | big) on 1 GPU and on 2 GPUs with ZeRO-2, same per-GPU
                   batch; tokens/s = GPUs x batch x max_length / (median s/iter), packed samples.
  lifecycle MODEL  a 2-GPU ZeRO-2 run is stopped after its first checkpoint (nothing may be left
                   running), resumed from that ZeRO checkpoint folder to the end, then merged.
Locally (no GPU) ``--profile cpu --gpus 1 --deepspeed none`` checks the flow on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_profiles import build_big, parse_log, write_dataset  # noqa: E402

LOG = None  # the phase's transcript


def say(text: str) -> None:
    print(text, flush=True)
    if LOG is not None:
        LOG.write(text + "\n")
        LOG.flush()


def wizard(*args: str, timeout: float = 540, check: bool = True) -> tuple[int, str]:
    """``xtuner-wizard ARGS`` (the console script's module), output kept in the transcript."""
    cmd = [sys.executable, "-m", "tui.launcher", *args]
    say("$ xtuner-wizard " + " ".join(args))
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )
    out = (proc.stdout + proc.stderr).strip()
    for line in out.splitlines()[-40:]:
        say("  | " + line)
    say(f"  -> exit {proc.returncode} in {time.monotonic() - t0:.1f} s")
    if check and proc.returncode != 0:
        raise SystemExit(f"wizard {args[0]} failed (exit {proc.returncode})")
    return proc.returncode, proc.stdout.strip()


# -- what is left running ----------------------------------------------------------------------
TRAIN_MARKERS = ("torch.distributed.run", "xtuner/tools/train.py", "xtuner.tools.train")


def leftovers(ws: Path) -> list[str]:
    """Processes of a run (its workspace in their command line, or a trainer), and GPU apps."""
    found = []
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(ws) in cmd or any(m in cmd for m in TRAIN_MARKERS):
            found.append(f"pid {proc.name} [{state}] {cmd[:160]}")
    try:
        apps = subprocess.run(
            [
                "nvidia-smi",
                "--query-compute-apps=pid,process_name,used_memory",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        apps = ""
    found += [
        f"gpu app: {line}"
        for line in apps.splitlines()
        if line.strip() and line.split(",")[0].strip() != str(me)
    ]
    return found


# -- GPU samples while a run trains ------------------------------------------------------------
class GpuWatch:
    """Samples every GPU once a second through the wizard's sampler (engine.gpu)."""

    def __init__(self) -> None:
        from engine.gpu import GpuSampler

        self.sampler = GpuSampler()
        self.samples: list[list] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> GpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(self.sampler.sample())

    def summary(self) -> dict:
        if not self.samples or not self.samples[0]:
            return {"gpus": 0}
        per_gpu = {}
        for sample in self.samples:
            for g in sample:
                row = per_gpu.setdefault(g.index, {"name": g.name, "util_max": 0, "mem_max_gb": 0})
                row["util_max"] = max(row["util_max"], g.util_pct or 0)
                row["mem_max_gb"] = round(max(row["mem_max_gb"], (g.mem_used_mb or 0) / 1024), 1)
        busiest = max(self.samples, key=lambda s: sum(g.util_pct or 0 for g in s))
        try:  # the Train pane's GPU panel lines, as the wizard would draw them
            from tui.widgets.gpu_panel import gpu_line

            lines = [gpu_line(g) for g in busiest]
        except Exception as exc:  # textual missing there: the samples still tell
            lines = [f"(panel not rendered: {exc})"] + [json.dumps(g.to_json()) for g in busiest]
        return {"gpus": len(per_gpu), "per_gpu": per_gpu, "panel_at_peak": lines}


# -- one training run --------------------------------------------------------------------------
def mmengine_log(ws: Path) -> Path | None:
    logs = sorted(ws.glob("work_dirs/*/2*/2*.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else None


def iterations(log: Path | None) -> list[dict]:
    return parse_log(log)["iters"] if log is not None else []


def show_run_log(ws: Path, lines: int = 60) -> None:
    """The end of a failed run's own log (the trainer's stdout and stderr), warnings left out."""
    logs = sorted(ws.glob(".wizard/runs/*/train.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return
    text = logs[-1].read_text(encoding="utf-8", errors="replace").splitlines()
    keep = [ln for ln in text if "warn" not in ln.lower()][-lines:]
    say(f"  --- end of {logs[-1].relative_to(ws)} ---")
    for line in keep:
        say("  ! " + line[:300])


def render(ws: Path, model: Path, data: Path, args, **settings) -> dict:
    sets = {
        "max_new_tokens": 16,
        "logger_interval": 1,
        "save_total_limit": 2,
        **settings,
    }
    argv = ["config", "-w", str(ws), "--model", str(model), "--data", str(data)]
    argv += ["--profile", args.profile, "--force"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    wizard(*argv, timeout=300)
    state = json.loads((ws / ".wizard" / "state.json").read_text())
    cfg = ws / state["choices"]["config"]
    text = cfg.read_text()

    def setting(name: str) -> str:
        m = re.search(rf"^{name} = (.+)$", text, re.M)
        return m.group(1).split("#")[0].strip() if m else "?"

    return {
        "config": str(cfg),
        "batch_size": int(setting("batch_size")),
        "max_length": int(setting("max_length")),
        "accumulative_counts": setting("accumulative_counts"),
    }


def train_args(gpus: int, stage: str) -> list[str]:
    return ["--gpus", str(gpus), "--deepspeed", stage]


def phase_speed(model_name: str, model: Path, data: Path, work: Path, args) -> list[dict]:
    rows = []
    for gpus in [int(g) for g in args.gpus.split(",")]:
        ws = work / f"ws-{model_name}-g{gpus}"
        cfg = render(ws, model, data, args, max_iters=args.iters, save_steps=100000)
        with GpuWatch() as watch:
            t0 = time.monotonic()
            code, out = wizard(
                "train", "-w", str(ws), *train_args(gpus, args.deepspeed), "--wait", check=False
            )
            wall = time.monotonic() - t0
        iters = iterations(mmengine_log(ws))
        if code != 0:
            show_run_log(ws)
        steady = [r["time"] for r in iters if r["iter"] > args.warmup] or [r["time"] for r in iters]
        s_it = statistics.median(steady) if steady else None
        tokens = gpus * cfg["batch_size"] * cfg["max_length"]
        shown = next((ln for ln in out.splitlines() if ln.startswith("starting:")), "")
        row = {
            "model": model_name,
            "gpus": gpus,
            "deepspeed": args.deepspeed,
            "exit": code,
            "wall_s": round(wall, 1),
            "iters_logged": len(iters),
            "s_per_iter_median": s_it,
            "tokens_per_iter": tokens,
            "tokens_per_s": round(tokens / s_it) if s_it else None,
            "peak_mem_gib_rank0": round(max(r["memory_mb"] or 0 for r in iters) / 1024, 2)
            if iters
            else None,
            "shown_command": shown.removeprefix("starting: "),
            "gpu_watch": watch.summary(),
            **{k: cfg[k] for k in ("batch_size", "max_length", "accumulative_counts")},
        }
        time.sleep(2)
        row["left_running"] = leftovers(ws)
        say(json.dumps(row, ensure_ascii=False))
        rows.append(row)
    base = next((r for r in rows if r["gpus"] == 1 and r["tokens_per_s"]), None)
    for r in rows:
        if base and r["tokens_per_s"]:
            r["speedup_vs_1gpu"] = round(r["tokens_per_s"] / base["tokens_per_s"], 2)
    return rows


def phase_lifecycle(model_name: str, model: Path, data: Path, work: Path, args) -> dict:
    from engine.runs.checkpoints import checkpoint_iteration, checkpoints_in

    gpus = max(int(g) for g in args.gpus.split(","))
    ws = work / f"ws-{model_name}-life"
    render(ws, model, data, args, max_iters=args.life_iters, save_steps=args.save_steps)
    result: dict = {"model": model_name, "gpus": gpus, "deepspeed": args.deepspeed}
    wizard("train", "-w", str(ws), *train_args(gpus, args.deepspeed))

    def checkpoints() -> list[Path]:
        return [c for d in (ws / "work_dirs").glob("*") if d.is_dir() for c in checkpoints_in(d)]

    deadline = time.monotonic() + args.ckpt_timeout
    ckpt = None
    with GpuWatch() as watch:
        while time.monotonic() < deadline:
            found = checkpoints()
            if found:
                ckpt = found[-1]
                break
            time.sleep(0.25)
        time.sleep(1.5)  # a GPU sample or two with both ranks training
    result["gpu_watch"] = watch.summary()
    if ckpt is None:
        show_run_log(ws)
    result["first_checkpoint"] = str(ckpt) if ckpt else None
    result["checkpoint_is_folder"] = bool(ckpt and ckpt.is_dir())
    if ckpt and ckpt.is_dir():
        result["checkpoint_files"] = sorted(
            str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file()
        )[:12]
    before = leftovers(ws)
    result["running_before_stop"] = len(before)
    t0 = time.monotonic()
    wizard("stop", "-w", str(ws), check=False)
    result["stop_s"] = round(time.monotonic() - t0, 1)
    result["left_after_stop"] = leftovers(ws)
    time.sleep(3)
    result["left_3s_after_stop"] = leftovers(ws)
    _, runs = wizard("runs", "-w", str(ws), "--json", check=False)
    try:
        result["stopped_state"] = json.loads(runs)[-1]["state"]
    except (ValueError, IndexError, KeyError):
        result["stopped_state"] = None
    if args.stop_only:
        say(json.dumps(result, ensure_ascii=False, indent=1))
        return result
    last = checkpoints()
    result["resumed_from_iter"] = checkpoint_iteration(last[-1]) if last else None
    log_before = mmengine_log(ws)
    code, _ = wizard("resume", "-w", str(ws), "--wait", check=False)
    result["resume_exit"] = code
    log_after = mmengine_log(ws)
    resumed = iterations(log_after) if log_after != log_before else []
    result["resumed_first_iter"] = resumed[0]["iter"] if resumed else None
    result["resumed_last_iter"] = resumed[-1]["iter"] if resumed else None
    result["left_after_resume"] = leftovers(ws)
    code, out = wizard("merge", "-w", str(ws), check=False, timeout=400)
    result["merge_exit"] = code
    merged = ws / "merged"
    result["merged_files"] = sorted(p.name for p in merged.glob("*")) if merged.is_dir() else []
    if code == 0:
        code, out = wizard("chat", "-w", str(ws), "--prompt", "请介绍一下你自己", check=False)
        result["chat_exit"] = code
        result["chat_answer"] = out.splitlines()[-1][:200] if out else ""
    say(json.dumps(result, ensure_ascii=False, indent=1))
    return result


def main() -> int:
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["speed", "lifecycle"])
    ap.add_argument("model", choices=["demo", "big"])
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-multi"))
    ap.add_argument("--work", default="/tmp/gpu-multi-work")
    ap.add_argument("--profile", default="lora")
    ap.add_argument("--gpus", default="1,2", help="GPU counts to run, e.g. 1,2")
    ap.add_argument("--deepspeed", default="zero2")
    ap.add_argument("--iters", type=int, default=30, help="speed: iterations per run")
    ap.add_argument("--warmup", type=int, default=5, help="speed: iterations not timed")
    ap.add_argument("--records", type=int, default=2000, help="tutorial dataset size (n)")
    ap.add_argument("--life-iters", type=int, default=300)
    ap.add_argument("--save-steps", type=int, default=20)
    ap.add_argument("--stop-only", action="store_true", help="lifecycle: no resume or merge")
    ap.add_argument("--ckpt-timeout", type=float, default=300)
    args = ap.parse_args()

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    LOG = open(out / f"{args.phase}-{args.model}.txt", "a", encoding="utf-8")  # noqa: SIM115
    from engine.demo import build_demo_model, is_complete

    t0 = time.monotonic()
    demo = work / "demo-model"
    if not is_complete(demo):
        build_demo_model(demo)
    model = demo
    if args.model == "big":
        model = build_big(demo, work / "internlm2-1_8b-random", "cuda")
        import torch

        torch.cuda.empty_cache()  # the trainers get the GPUs; this process keeps none
    say(f"model {args.model}: ready in {time.monotonic() - t0:.1f} s")
    data = work / "datas" / f"tutorial-{args.records}.json"
    if not data.exists():
        write_dataset(data, args.records)

    if args.phase == "speed":
        result = phase_speed(args.model, model, data, work, args)
    else:
        result = phase_lifecycle(args.model, model, data, work, args)
    path = out / f"{args.phase}-{args.model}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
