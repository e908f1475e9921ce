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
        "--model",
        default=None,
        dest="global_model",
        metavar="PATH|demo",
        help="the model folder to fine-tune: the wizard's, the --model of doctor, config, "
        "data validate and run-all, and chat's MODEL",
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
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return _merge_model(args)


def _merge_model(args: argparse.Namespace) -> argparse.Namespace:
    """The global ``--model`` and a command's own ``--model`` mean the same thing.

    Commands with a ``--model`` option say so with ``set_defaults(takes_model=True)``; one
    given both ways must agree. A global ``--model`` before a command without one is an
    error (one line), never silently ignored.
    """
    given = args.__dict__.pop("global_model", None)
    if args.command is None:
        args.model = given
        return args
    if given is None:
        return args
    if getattr(args, "takes_model", False):
        own = getattr(args, "model", None)
        if own is None:
            args.model = given
        elif not _same_model(args, given, own):
            args.model_conflict = (given, own)
    else:
        args.model_ignored = given
    return args


def _same_model(args: argparse.Namespace, one: str, other: str) -> bool:
    """Whether two typed models are one selection (``demo`` and ``./demo-model`` typed in
    the workspace, ``m`` and ``./m``): resolved as :mod:`engine.selection` does, not as text."""
    if one == other:
        return True
    from engine.selection import model_choice

    ws = workspace_of(args)
    try:
        a, b = (model_choice(ws, v, check=False) for v in (one, other))
    except (WizardError, OSError):
        return False
    return a is not None and b is not None and a.path.resolve() == b.path.resolve()


def workspace_of(args: argparse.Namespace) -> Workspace:
    return Workspace(getattr(args, "workspace", "."))


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and exit code 2."""
    try:
        _check_model_flags(args)
        code = args.func(args)
    except WizardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:
        # a full disk, a read-only workspace, no permission: the user's to fix, one line
        from engine.workspace import WRITE_FIXES, write_error

        if exc.errno not in WRITE_FIXES:
            raise
        where = exc.filename or "."
        print(f"error: {write_error(exc, where, writing=False)}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _reader_gone()
    return int(code or 0)


def _check_model_flags(args: argparse.Namespace) -> None:
    conflict = getattr(args, "model_conflict", None)
    if conflict:
        raise WizardError(
            f"two different models given: {conflict[0]} and {conflict[1]}",
            where="--model",
            fix="give --model once",
        )
    ignored = getattr(args, "model_ignored", None)
    if ignored is not None:
        raise WizardError(
            f"`{args.command}` takes no model (it uses the workspace's config and runs)",
            where=f"--model {ignored}",
            fix="drop --model here; choose the model with `xtuner-wizard config --model PATH`",
        )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        return run(args)
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """The output's reader went away (``| head``): stop quietly, as ``cat`` does.

    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by SIGPIPE
