"""``xtuner-wizard eval``: base vs tuned on the held-out identity questions and general prompts."""

from __future__ import annotations

import argparse
import sys


def register(sub, parent) -> None:
    p = sub.add_parser(
        "eval",
        parents=[parent],
        help="ask base and tuned models the held-out questions; report the identity hit rate",
        description="Greedy, deterministic: the held-out identity paraphrases (datas/heldout.json) "
        "and a few general prompts, asked of the base and the tuned model. Reports the share "
        "answered with the identity and how far general answers moved; writes eval/report.json "
        "and eval/report.md.",
    )
    p.add_argument("--base", metavar="MODEL", help="base model (default: the merged model's base)")
    p.add_argument("--tuned", metavar="MODEL", help="tuned model (default: the merged model)")
    p.add_argument(
        "--adapter", metavar="DIR", help="evaluate base + this adapter as the tuned model"
    )
    p.add_argument("--heldout", metavar="PATH", help="held-out set (default: datas/heldout.json)")
    p.add_argument("--engine", default="hf")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--limit", type=int, help="only the first N questions of each kind")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code the model folders bring (auto_map, *.py); asked once per "
        "version of that code",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import json

    from engine.cli import workspace_of
    from engine.evaluate import evaluate, report_paths

    ws = workspace_of(args)

    def progress(what: str, done: int, total: int) -> None:
        print(f"[{done}/{total}] {what}", file=sys.stderr, flush=True)

    report = evaluate(
        ws,
        base=args.base,
        tuned=args.tuned,
        adapter=args.adapter,
        heldout=args.heldout,
        engine=args.engine,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        progress=progress,
        trust_remote_code=args.trust_remote_code,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        for line in report.summary_lines():
            print(line)
        jpath, mpath = report_paths(ws)
        print(f"report: {ws.rel(mpath)} ({ws.rel(jpath)})")
    return 0
