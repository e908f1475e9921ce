"""From Start to the tuned model's first answer on one GPU: the tutorial by hand vs the wizard.

Run by ``benchmarks/gpu_first_answer.sh`` on the H200 machine (issue 15). Phases (each one a
sub-command, results as JSON under --out; ``report`` joins them into a markdown table):

  prepare   the demo model, a random InternLM2 with internlm2-chat-1_8b's dimensions
            (gpu_profiles.build_big: xtuner's modelling code, the demo tokenizer) and the
            tutorial's dataset (n=8000 -> 16,002 records).
  tutorial  the tutorial by hand, timed phase by phase: its own config (tests/data/tutorial,
            only the model path edited, as the tutorial has the user do), ``xtuner train``,
            ``xtuner convert pth_to_hf``, ``xtuner convert merge``, ``xtuner chat`` on the
            merged model asked the identity question.
  wizard    ``xtuner-wizard run-all --model BIG --style tutorial --n 8000`` (auto profile),
            every line it prints timestamped; then the demo: ``run-all`` and ``chat`` (default
            engine) asked the same question.
  report    the table (phases, Start -> first tuned answer, losses, tokens/s, MFU).

Locally (CPU): ``--cpu`` runs the same flow on the demo model only (no 1.89B), to check it.
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TUTORIAL_CFG = REPO / "tests" / "data" / "tutorial" / "internlm2_chat_1_8b_qlora_alpaca_e3_copy.py"
TUTORIAL_MODEL = "/root/InternLM/XTuner/Shanghai_AI_Laboratory/internlm2-chat-1_8b"
PROMPT = "请介绍一下你自己"
EXPECTED = "我是伍鲜同志的小助手"
ITER_LINE = re.compile(
    r"Iter\(train\) \[\s*(\d+)/(\d+)\].*?lr: ([\d.e+-]+).*?time: ([\d.]+)"
    r"(?:.*?memory: (\d+))?.*?loss: ([\d.]+)"
)
STAMP = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)")
from engine.xtuner_env import child_env  # noqa: E402

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s (spec); ~790e12 measured for large matmuls


def now() -> float:
    return time.time()


def run_timed(
    cmd: list[str], *, cwd: Path, log: Path, stdin: str | None = None, timeout: float = 900
) -> dict:
    """Run ``cmd``; every output line goes to ``log`` with its seconds since the start."""
    t0 = now()
    lines = []
    env = child_env()  # the tutorial's env (MKL_*), offline, a torchvision stand-in if none
    if Path("/tmp/pybin/python").exists():  # `xtuner train` runs `python`: this python3
        env["PATH"] = "/tmp/pybin" + os.pathsep + env["PATH"]
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            t = now() - t0
            lines.append((round(t, 2), line))
            fh.write(f"[{t:7.2f}] {line}\n")
            fh.flush()
            if t > timeout:
                proc.kill()
        code = proc.wait()
        fh.write(f"[exit {code} after {now() - t0:.1f} s]\n")
    return {"cmd": cmd, "exit": code, "start": t0, "seconds": round(now() - t0, 2), "lines": lines}


def train_log_facts(lines: list[tuple[float, str]]) -> dict:
    """From a training's output (timestamped lines): when things happened, iterations, loss."""
    facts: dict = {"iters": []}
    for t, line in lines:
        m = ITER_LINE.search(line)
        if m:
            facts["iters"].append(
                {
                    "t": t,
                    "iter": int(m.group(1)),
                    "max": int(m.group(2)),
                    "lr": float(m.group(3)),
                    "time": float(m.group(4)),
                    "memory_mb": int(m.group(5)) if m.group(5) else None,
                    "loss": float(m.group(6)),
                }
            )
        for key, marker in (
            ("t_eval_before", "before_train in EvaluateChatHook"),
            ("t_eval_after_iter", "after_train_iter in EvaluateChatHook"),
            ("t_eval_after_train", "after_train in EvaluateChatHook"),
            ("t_saving", "Saving checkpoint at"),
            ("t_num_samples", "Num train samples"),
            ("t_dataset_map", "Map"),
        ):
            if marker in line:
                facts.setdefault(key, t)
                facts.setdefault(key + "_all", []).append(t)
        if "Reach the end of the dataloader" in line:
            facts.setdefault("epoch_restarts", []).append(t)
        if "Num train samples" in line:
            facts["num_train_samples"] = line.rsplit(" ", 1)[-1]
    its = facts["iters"]
    if its:
        facts["first_iter_t"] = its[0]["t"]
        facts["last_iter_t"] = its[-1]["t"]
        facts["final_loss"] = its[-1]["loss"]  # mmengine's: the mean of its last interval
        last = its[-1]["iter"]
        window = [i["loss"] for i in its if i["iter"] > last - 10]
        facts["final_loss_last10"] = round(statistics.mean(window), 4)  # iterations, not lines
        facts["last_logged_iter"] = last
        facts["first_loss"] = its[0]["loss"]
        steady = [i["time"] for i in its[len(its) // 5 :]] or [its[-1]["time"]]
        facts["median_s_per_iter"] = statistics.median(steady)
        facts["max_lr"] = max(i["lr"] for i in its)
        facts["max_memory_mb"] = max((i["memory_mb"] or 0) for i in its)
    return facts


def mmengine_log_lines(work_dir: Path, t0: float) -> list[tuple[float, str]]:
    """mmengine's own log (every iteration's line), seconds since ``t0`` (epoch) from its
    timestamps (whole seconds)."""
    logs = sorted(work_dir.glob("*/*.log"))
    if not logs:
        return []
    out, t = [], 0.0
    for line in logs[-1].read_text(encoding="utf-8", errors="replace").splitlines():
        m = STAMP.match(line)
        if m:
            t = time.mktime(time.strptime(m.group(1), "%Y/%m/%d %H:%M:%S")) - t0
        out.append((round(t, 1), line))
    return out


# -- prepare ------------------------------------------------------------------------------------
def phase_prepare(args) -> dict:
    from gpu_profiles import build_big, write_dataset

    from engine.demo import build_demo_model, is_complete

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = now()
    demo = work / "demo-model"
    if not is_complete(demo):
        shutil.rmtree(demo, ignore_errors=True)
        build_demo_model(demo)
    out = {"demo_s": round(now() - t0, 1)}
    t0 = now()
    big = demo if args.cpu else build_big(demo, work / "internlm2-1_8b-random", "cuda")
    out["big_s"] = round(now() - t0, 1)
    data = work / "assistant.json"
    if not data.exists():
        write_dataset(data, args.n)
    out.update(demo=str(demo), big=str(big), data=str(data))
    return out


def _paths(args) -> tuple[Path, Path, Path]:
    work = Path(args.work)
    big = work / ("demo-model" if args.cpu else "internlm2-1_8b-random")
    return work, big, work / "assistant.json"


def _xtuner() -> list[str]:
    exe = shutil.which("xtuner")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from xtuner.entry_point import cli; sys.exit(cli())"]


# -- the tutorial by hand ----------------------------------------------------------------------
def phase_tutorial(args) -> dict:
    work, big, data = _paths(args)
    ws = work / "tutorial"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "datas").mkdir(parents=True)
    shutil.copyfile(data, ws / "datas" / "assistant.json")
    cfg = ws / TUTORIAL_CFG.name
    text = TUTORIAL_CFG.read_text(encoding="utf-8").replace(TUTORIAL_MODEL, str(big))
    if args.cpu:  # the CPU stand-ins the wizard's cpu profile writes (only to check the flow)
        text = _cpu_edits(text)
    cfg.write_text(text, encoding="utf-8")
    log = Path(args.out) / "tutorial.log"
    log.unlink(missing_ok=True)
    res: dict = {"phases": []}
    start = now()

    def phase(name: str, cmd: list[str], **kw) -> dict:
        r = run_timed(cmd, cwd=ws, log=log, **kw)
        res["phases"].append(
            {
                "phase": name,
                "seconds": r["seconds"],
                "exit": r["exit"],
                "at": round(r["start"] - start, 2),
            }
        )
        print(f"tutorial {name}: exit {r['exit']} in {r['seconds']:.1f} s", flush=True)
        return r

    train = phase("xtuner train", [*_xtuner(), "train", cfg.name], timeout=args.timeout)
    res["train"] = train_log_facts(train["lines"])
    work_dir = ws / "work_dirs" / cfg.stem
    last = (
        (work_dir / "last_checkpoint").read_text().strip()
        if (work_dir / "last_checkpoint").exists()
        else None
    )
    res["checkpoint"] = last
    if not last:
        res["error"] = "no checkpoint"
        return res
    phase("xtuner convert pth_to_hf", [*_xtuner(), "convert", "pth_to_hf", cfg.name, last, "./hf"])
    phase(
        "xtuner convert merge",
        [*_xtuner(), "convert", "merge", str(big), "./hf", "./merged", "--max-shard-size", "2GB"],
    )
    chat = phase(
        "xtuner chat (load + ask)",
        # the answer capped as the wizard's first answer is (64 tokens): an untrained random
        # model never says <|im_end|>, and xtuner chat's default is 2048 new tokens
        [
            *_xtuner(),
            "chat",
            "./merged",
            "--prompt-template",
            "internlm2_chat",
            "--max-new-tokens",
            "64",
        ],
        stdin=f"{PROMPT}\n\nEXIT\n\n",
        timeout=300,
    )
    answer = [ln for _, ln in chat["lines"] if EXPECTED[:4] in ln or "<|im_end|>" in ln]
    res["answer"] = answer[:3] or [ln for _, ln in chat["lines"][-6:]]
    res["first_answer_s"] = round(now() - start, 1)
    return res


def _cpu_edits(text: str) -> str:
    from engine.config.render import ConfigSource
    from engine.config.settings import apply_setting

    src = ConfigSource(text)
    for k, v in (
        ("cpu_bf16_patch", True),
        ("quantization", None),
        ("torch_dtype", "float32"),
        ("amp", None),
        ("dist_backend", "gloo"),
        ("max_length", 256),
        ("max_iters", 20),
        ("max_new_tokens", 16),
        ("accumulative_counts", 1),
    ):
        apply_setting(src, k, v)
    return src.text


# -- the wizard ----------------------------------------------------------------------------------
def wizard_cmd(*a: str) -> list[str]:
    return [sys.executable, "-m", "tui.launcher", *a]


def phase_wizard(args) -> dict:
    work, big, _data = _paths(args)
    res: dict = {}
    out = Path(args.out)
    which = os.environ.get("ONLY", "big,demo").split(",")
    for name, model, extra in (
        ("big", big, ["--style", "tutorial", "--n", str(args.n)]),
        ("demo", "demo", []),
    ):
        if name not in which:
            continue
        if args.cpu:
            extra = [*extra, "--max-iters", "20"]
        ws = work / f"wizard-{name}"
        shutil.rmtree(ws, ignore_errors=True)
        log = out / f"wizard-{name}.log"
        log.unlink(missing_ok=True)
        r = run_timed(
            wizard_cmd(
                "run-all", "-w", str(ws), "--name", "伍鲜同志", "--model", str(model), *extra
            ),
            cwd=REPO,
            log=log,
            timeout=args.timeout,
        )
        lines = r["lines"]

        def at(prefix: str, lines=lines) -> float | None:
            return next((t for t, ln in lines if ln.startswith(prefix)), None)

        run = {
            "exit": r["exit"],
            "seconds": r["seconds"],
            "t_config": at("config: wrote"),
            "t_train_start": at("train: run"),
            "t_first_answer": at("chat: "),
            "t_merge_start": at("merge: prepare") or at("merge: convert"),
            "t_merge_convert": at("merge: convert"),
            "t_merge_merge": at("merge: merge"),
            "t_merge_check": at("merge: check"),
            "t_done": r["seconds"],
            "answer": [ln for _, ln in lines if ln.startswith("chat: ")],
            "notes": [ln for _, ln in lines if ln.startswith("config: ")],
        }
        work_dir = next((ws / "work_dirs").glob("*"), None) if (ws / "work_dirs").exists() else None
        if work_dir is not None:
            mlines = mmengine_log_lines(work_dir, r["start"])
            run["train"] = train_log_facts(mlines)
            trainlog = next(iter(sorted((ws / ".wizard" / "runs").glob("*/train.log"))), None)
            if trainlog is not None:
                shutil.copyfile(trainlog, out / f"wizard-{name}-train.log")
        cfgs = sorted(ws.glob("*_copy.py"))
        if cfgs:
            shutil.copyfile(cfgs[0], out / f"wizard-{name}-config.py")
        res[name] = run
        print(
            f"wizard {name}: exit {r['exit']} in {r['seconds']:.1f} s; answer {run['answer']}",
            flush=True,
        )
        if name == "demo":
            c = run_timed(
                wizard_cmd("chat", "-w", str(ws), "--prompt", PROMPT),
                cwd=REPO,
                log=log,
                timeout=300,
            )
            run["chat_cli"] = {
                "exit": c["exit"],
                "seconds": c["seconds"],
                "lines": [ln for _, ln in c["lines"]][-5:],
            }
            print(f"demo chat: {run['chat_cli']}", flush=True)
    return res


# -- report --------------------------------------------------------------------------------------
def phase_report(args) -> dict:
    out = Path(args.out)
    tut = _load(out / "tutorial.json")
    wiz = _load(out / "wizard.json")
    lines = ["| path | phase | at s | seconds |", "|---|---|---|---|"]
    if tut:
        for p in tut.get("phases", []):
            lines.append(f"| tutorial by hand | {p['phase']} | {p['at']} | {p['seconds']} |")
        lines.append(
            f"| tutorial by hand | **Start -> first tuned answer** | | **{tut.get('first_answer_s')}** |"
        )
    big = (wiz or {}).get("big")
    if big:
        t0 = big.get("t_train_start") or 0.0
        for key, name in (
            ("t_config", "data + config written"),
            ("t_train_start", "training started"),
            ("t_first_answer", "first tuned answer (from the checkpoint)"),
            ("t_merge_check", "merge: load check started"),
            ("t_done", "run-all done (converted + merged)"),
        ):
            if big.get(key) is not None:
                lines.append(
                    f"| wizard run-all | {name} | {big[key]} | {round(big[key] - t0, 1)} after training start |"
                )
    summary = {"table": "\n".join(lines)}
    for label, facts in (
        ("tutorial", (tut or {}).get("train")),
        ("auto", (big or {}).get("train")),
    ):
        if facts and facts.get("iters"):
            summary[label] = {
                k: facts.get(k)
                for k in (
                    "first_loss",
                    "final_loss",
                    "final_loss_last10",
                    "last_logged_iter",
                    "median_s_per_iter",
                    "max_lr",
                    "max_memory_mb",
                    "num_train_samples",
                )
            }
            summary[label]["iterations"] = facts["iters"][-1]["max"]
    auto = summary.get("auto")
    if auto and auto.get("median_s_per_iter"):
        cfg = out / "wizard-big-config.py"
        from engine.config import settings_of_text
        from engine.config.estimate import Plan, flops_per_token, model_size

        s = settings_of_text(cfg.read_text(encoding="utf-8")) if cfg.exists() else {}
        batch, length = int(s.get("batch_size") or 8), int(s.get("max_length") or 2048)
        tps = batch * length / auto["median_s_per_iter"]
        _, big_path, _ = _paths(args)
        size = model_size(big_path)
        plan = Plan(
            None, "bfloat16", 64, batch, length, bool(s.get("use_activation_checkpointing")), "sdpa"
        )
        fpt = flops_per_token(size, plan)
        auto.update(
            tokens_per_s=round(tps), flops_per_token=fpt, mfu=round(tps * fpt / H200_BF16_PEAK, 3)
        )
    (out / "report.md").write_text(summary["table"] + "\n", encoding="utf-8")
    return summary


def _load(p: Path) -> dict | None:
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=("prepare", "tutorial", "wizard", "report"))
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/first-answer"))
    ap.add_argument("--work", default="/tmp/first-answer-work")
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--timeout", type=float, default=560)
    ap.add_argument("--cpu", action="store_true", help="the demo model only (check the flow)")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    fn = {
        "prepare": phase_prepare,
        "tutorial": phase_tutorial,
        "wizard": phase_wizard,
        "report": phase_report,
    }
    res = fn[args.phase](args)
    (Path(args.out) / f"{args.phase}.json").write_text(
        json.dumps(res, indent=1, ensure_ascii=False)
    )
    print(
        json.dumps(
            {k: v for k, v in res.items() if k not in ("phases",)}, ensure_ascii=False, default=str
        )[:3000]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
