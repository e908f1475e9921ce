"""CLI: ``run-all``: every step of the tutorial in order, headless."""

from __future__ import annotations


def register(sub, parent):
    p = sub.add_parser(
        "run-all",
        parents=[parent],
        help="every step in order: data, config, train, merge, chat",
        description="Every step of the tutorial in order. On the demo model it picks data and run "
        "sizes that suit a CPU (and says so).",
    )
    p.add_argument("--name", required=True, help="your name, as the assistant should say it")
    p.add_argument(
        "--model",
        default="demo",
        metavar="PATH|demo|demo-qwen2",
        help="the model folder (default: demo, the tiny InternLM2; demo-qwen2: a tiny Qwen2)",
    )
    p.add_argument("--profile", default="auto", help="config profile: auto|tutorial|qlora|lora|cpu")
    p.add_argument("--style", choices=("varied", "tutorial"), default=None, help="dataset style")
    p.add_argument("--n", type=int, default=None, help="dataset size (see `data generate`)")
    p.add_argument("--max-iters", type=int, default=None, help="stop training after N iterations")
    p.add_argument(
        "--force", action="store_true", help="replace hand-edited files (backups are kept)"
    )
    p.set_defaults(func=_run_all)


def _run_all(args) -> int:
    from engine.cli import workspace_of
    from engine.pipeline import run_all

    run_all(
        workspace_of(args),
        name=args.name,
        model=args.model,
        profile=args.profile,
        style=args.style,
        n=args.n,
        max_iters=args.max_iters,
        force=args.force,
        say=lambda line: print(line, flush=True),
    )
    return 0
