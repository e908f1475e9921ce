"""The headless face of the engine: ``xtuner-wizard <command>``.

Each command lives in its own module with ``register(subparsers, parent)``; importing a
command module must stay cheap (no torch/transformers/xtuner at import time).
Errors the user can fix are :class:`~engine.errors.WizardError`: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engine.errors import WizardError
from engine.workspace import Workspace

COMMAND_MODULES = (
    "engine.cli.doctor",
    "engine.cli.demo",
    "engine.cli.models",
    "engine.cli.data",
    "engine.cli.config",
    "engine.cli.train",
    "engine.cli.merge",
    "engine.cli.chat",
    "engine.cli.evaluate",
    "engine.cli.run_all",
    "engine.cli.distributed",
)

EXIT_USER_ERROR = 2


def _workspace_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--workspace",
        "-w",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the workspace folder (default: the current folder)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xtuner-wizard",
        description="Fine-tune a personal-assistant chat model with XTuner, step by step. "
        "With no command it opens the terminal wizard.",
    )
    parser.add_argument(
        "--workspace", "-w", default=".", metavar="DIR", help="the workspace folder (default: .)"
    )
    parser.add_argument(
        "--model", default=None, metavar="PATH|demo", help="the model folder to fine-tune (wizard)"
    )
    parser.add_argument(
        "--low-bandwidth",
        action="store_true",
        help="fewer colours and no animations (automatic over SSH)",
    )
    parser.add_argument("--version", action="version", version="xtuner-wizard 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = _workspace_parent()
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub, parent)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))


def workspace_of(args: argparse.Namespace) -> Workspace:
    return Workspace(getattr(args, "workspace", "."))


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and exit code 2."""
    try:
        code = args.func(args)
    except WizardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    return run(args)
