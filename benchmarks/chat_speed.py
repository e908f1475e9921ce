"""Chat speed per engine: time to first token and decode tokens/s at batch 1.

    .venv/bin/python benchmarks/chat_speed.py --model DIR            # a model folder (the demo)
    python benchmarks/chat_speed.py --random-internlm2 1_8b         # random InternLM2, 1.8B dims

``--random-internlm2 1_8b`` builds internlm2-chat-1_8b's shape (hidden 2048, 24 layers, 16
heads, 8 KV heads, intermediate 8192, vocab 92544) with xtuner's InternLM2 modelling code and
random weights, directly on the device (no tokenizer needed: the engines are driven with token
ids and ``ignore_eos``, so every engine decodes exactly ``--new-tokens`` tokens). ``tiny``
builds a small one (for trying the script on a CPU). Prints a markdown table and, with
``--json``, writes the rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {
    "1_8b": dict(
        hidden_size=2048,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=92544,
    ),
    "tiny": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=688,
        vocab_size=2000,
    ),
}


def random_internlm2(size: str, device: str, dtype):
    """A random-weight InternLM2 (xtuner's modelling code, loaded as remote code)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.xtuner_env import xtuner_package_dir

    src = xtuner_package_dir() / "_lite" / "modelings" / "internlm2"
    folder = Path(tempfile.mkdtemp(prefix="internlm2-"))
    for name in ("configuration_internlm2.py", "modeling_internlm2.py"):
        shutil.copy(src / name, folder / name)
    config = dict(
        SIZES[size],
        architectures=["InternLM2ForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
        },
        model_type="internlm2",
        bias=False,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        rope_theta=1000000,
        rope_scaling={"type": "dynamic", "factor": 2.0},
        max_position_embeddings=32768,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
        attn_implementation="eager",
        torch_dtype="bfloat16",
    )
    (folder / "config.json").write_text(json.dumps(config))
    cfg = AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True, torch_dtype=dtype)
    model.eval()
    return model


def measure(engine, prompt_ids, new_tokens: int, repeats: int) -> dict:
    ttft, tps = [], []
    for _ in range(repeats):
        n = 0
        for _tok in engine.generate_tokens(prompt_ids, max_new_tokens=new_tokens, ignore_eos=True):
            n += 1
        st = engine.stats
        ttft.append(st.time_to_first_token * 1000)
        tps.append(st.decode_tokens_per_s or 0.0)
    return {
        "new_tokens": n,
        "ttft_ms": round(statistics.median(ttft), 1),
        "decode_tok_s": round(statistics.median(tps), 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a model folder")
    src.add_argument("--random-internlm2", choices=sorted(SIZES))
    ap.add_argument("--engines", default="hf,fast")
    ap.add_argument("--device", default=None)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument(
        "--workspace",
        default=".",
        help="the workspace whose confirmation of --model's Python counts (engine.trust: "
        "`xtuner-wizard chat MODEL --trust-remote-code` or the Environment step records one)",
    )
    args = ap.parse_args(argv)

    import torch

    from engine.chat.base import pick_device
    from engine.chat.templates import get_template

    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    t0 = time.perf_counter()
    if args.model:
        from engine.chat.hf import load_hf_model
        from engine.workspace import Workspace

        model, tokenizer = load_hf_model(
            Path(args.model), device=device, dtype=dtype, workspace=Workspace(args.workspace)
        )
        label = Path(args.model).name
    else:
        model, tokenizer = random_internlm2(args.random_internlm2, device, dtype), None
        label = f"random InternLM2 {args.random_internlm2}"
    n_params = sum(p.numel() for p in model.parameters())
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(10, vocab, (args.prompt_tokens,), generator=g).tolist()
    template = get_template("internlm2_chat")
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    print(
        f"# {label}: {n_params / 1e9:.3f}B params, {dtype}, {gpu}, loaded in {load_s:.1f}s",
        flush=True,
    )

    rows = []
    for name in args.engines.split(","):
        t1 = time.perf_counter()
        if name == "hf":
            from engine.chat.hf import HFEngine

            engine = HFEngine(model=model, tokenizer=tokenizer, template=template, device=device)
        elif name in ("fast", "fast-eager", "fast-compile"):
            from engine.chat.fast import FastEngine

            try:
                engine = FastEngine(
                    model=model,
                    tokenizer=tokenizer,
                    template=template,
                    device=device,
                    max_len=args.max_len,
                    cuda_graphs=None if name != "fast-eager" else False,
                    compile=name == "fast-compile",
                )
            except Exception as exc:  # e.g. no compiler for inductor on that machine
                print(f"{name}: failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                continue
        else:
            from engine.chat.base import load_engine
            from engine.workspace import Workspace

            engine = load_engine(
                name, args.model, device=device, workspace=Workspace(args.workspace)
            )
        setup_s = time.perf_counter() - t1
        list(engine.generate_tokens(prompt, max_new_tokens=8, ignore_eos=True))  # warm-up
        row = {"engine": name, "model": label, "device": gpu, "setup_s": round(setup_s, 2)}
        row.update(measure(engine, prompt, args.new_tokens, args.repeats))
        rows.append(row)
        print(f"{name}: {row}", flush=True)
        # the same greedy tokens as transformers? (bf16 near-ties on random weights may differ)
        row["first_tokens"] = list(
            engine.generate_tokens(prompt, max_new_tokens=16, ignore_eos=True)
        )
        if hasattr(engine, "close"):
            engine.close()

    hf_first = next((r.get("first_tokens") for r in rows if r["engine"] == "hf"), None)
    print()
    print(
        f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, batch 1, median of {args.repeats}"
    )
    print()
    print(
        "| engine | model | device | time to first token (ms) | decode tokens/s | same first 16 tokens as hf |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        same = (
            "-"
            if r["engine"] == "hf" or hf_first is None
            else (
                "yes"
                if r.get("first_tokens") == hf_first
                else f"first {next((i for i, (a, b) in enumerate(zip(r['first_tokens'], hf_first, strict=False)) if a != b), 16)}"
            )
        )
        print(
            f"| {r['engine']} | {r['model']} | {r['device']} | {r['ttft_ms']} | {r['decode_tok_s']} | {same} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
