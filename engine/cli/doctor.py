"""``xtuner-wizard doctor``: the environment checks as a table (or JSON).

Exit code 0 when training can go ahead (warnings allowed), 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys

GLYPHS = {"ok": "✓", "warn": "!", "fail": "✗"}
STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def register(sub, parent) -> None:
    p = sub.add_parser(
        "doctor",
        parents=[parent],
        help="check the environment, the model folder and the dataset",
        description="Check Python, torch/CUDA, GPUs, bitsandbytes, package versions, disk, "
        "RAM, CPU, the model folder and the dataset. Exit code 0 when training can go "
        "ahead (warnings allowed), 1 otherwise.",
    )
    p.add_argument("--model", default=None, metavar="PATH|demo", help="model folder to check")
    p.add_argument("--data", default=None, metavar="PATH", help="dataset file to check")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--no-probe",
        action="store_true",
        help="skip importing torch in a child process (faster; no CUDA/bitsandbytes check)",
    )
    p.set_defaults(func=handle, takes_model=True)


def render_table(checks, *, can_train: bool):
    from rich.table import Table
    from rich.text import Text

    table = Table(title="xtuner-wizard doctor", show_lines=False, expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("fix", overflow="fold", style="cyan")
    for c in checks:
        table.add_row(
            Text(GLYPHS[c.status], style=STYLES[c.status]),
            Text(c.name, style=STYLES[c.status] if c.status != "ok" else ""),
            c.detail,
            c.fix,
        )
    verdict = (
        Text("Training can go ahead.", style="green")
        if can_train
        else Text("Training cannot go ahead: fix the ✗ lines.", style="bold red")
    )
    return table, verdict


def handle(args: argparse.Namespace) -> int:
    from engine import envcheck
    from engine.cli import workspace_of

    ws = workspace_of(args)
    checks = envcheck.run_checks(ws, model=args.model, dataset=args.data, probe=not args.no_probe)
    ok = envcheck.can_train(checks)
    if args.json:
        json.dump(envcheck.checks_to_json(checks), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        from rich.console import Console

        console = Console()
        table, verdict = render_table(checks, can_train=ok)
        console.print(table)
        console.print(verdict)
    return 0 if ok else 1
