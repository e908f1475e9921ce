"""``xtuner-wizard demo-model [DIR] [--arch internlm2|qwen2]``: build an offline demo model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

PROGRESS_PREFIX = "PROGRESS"


def register(sub, parent) -> None:
    p = sub.add_parser(
        "demo-model",
        parents=[parent],
        help="build the tiny offline demo model (InternLM2 or Qwen2, seconds, no network)",
        description="Build a tiny random InternLM2 model with xtuner's own modelling code and "
        "an offline tokenizer, so the whole flow runs on a CPU. Without DIR it goes into "
        "the workspace's demo-model/ (kept if already complete). --arch qwen2 builds a tiny "
        "Qwen2 (transformers' own code) into demo-qwen2/: use it with --model demo-qwen2.",
    )
    p.add_argument(
        "--arch",
        choices=("internlm2", "qwen2"),
        default="internlm2",
        help="the architecture (default internlm2; qwen2 -> demo-qwen2/)",
    )
    p.add_argument("dir", nargs="?", default=None, metavar="DIR", help="folder to create")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--progress",
        action="store_true",
        help="print machine-readable progress lines (PROGRESS stage stages message)",
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from engine import demo
    from engine.cli import workspace_of

    def progress(stage: int, stages: int, message: str) -> None:
        print(f"{PROGRESS_PREFIX} {stage} {stages} {message}", flush=True)

    on_progress = progress if args.progress else None
    start = time.monotonic()
    if args.dir is None:
        ws = workspace_of(args).ensure()
        was_complete = demo.is_complete(demo.demo_dir(ws, args.arch))
        out = demo.ensure_demo_model(ws, seed=args.seed, on_progress=on_progress, arch=args.arch)
        if was_complete:
            print(f"demo model already built: {out}")
            return 0
    elif demo.is_complete(Path(args.dir)):
        print(f"demo model already built: {args.dir}")
        return 0
    else:
        out = demo.build_demo_model(
            Path(args.dir), seed=args.seed, on_progress=on_progress, arch=args.arch
        )
    info = demo.describe(out)
    print(
        f"built the demo model in {time.monotonic() - start:.1f} s: {out}\n"
        f"  {info['architecture']}, {info['parameters'] / 1e6:.1f}M parameters, "
        f"vocab {info['vocab_size']}, seed {info['seed']}"
    )
    return 0


def parse_progress(line: str) -> tuple[int, int, str] | None:
    """(stage, stages, message) from a ``--progress`` line, else None."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[0] != PROGRESS_PREFIX:
        return None
    try:
        return int(parts[1]), int(parts[2]), parts[3] if len(parts) > 3 else ""
    except ValueError:
        return None


def command(workspace: Path | str, *, seed: int = 0, arch: str = "internlm2") -> list[str]:
    """The child-process command that builds the workspace's demo model with progress lines."""
    import sys

    return [
        sys.executable,
        "-c",
        "import sys; from engine.cli import main; sys.exit(main())",
        "--workspace",
        str(workspace),
        "demo-model",
        "--seed",
        str(seed),
        "--arch",
        arch,
        "--progress",
    ]
