"""Console script: ``xtuner-wizard`` opens the wizard; ``xtuner-wizard CMD`` runs headless."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def on_slow_link(flag: bool) -> bool:
    """Low-bandwidth mode: asked for, or a session reached over SSH."""
    return flag or bool(os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"))


def _checked_model(workspace: str, model: str | None) -> str | None:
    """``--model`` resolved from this folder, checked, as the state will store it (absolute,
    or ``demo``): a bad one is refused here, before the app opens or writes anything."""
    if not model:
        return None
    from engine.selection import model_choice
    from engine.workspace import Workspace

    return model_choice(Workspace(workspace), model).value


def main(argv: Sequence[str] | None = None) -> int:
    from engine import cli

    args = cli.parse(argv)
    if args.command is not None:
        return cli.run(args)
    low_bandwidth = on_slow_link(args.low_bandwidth)
    if low_bandwidth:
        # Must be set before Textual is imported: fewer colours mean shorter escape codes.
        os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "256")
        os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    from engine.errors import WizardError

    try:
        model = _checked_model(args.workspace, args.model)
        from tui.app import WizardApp

        app = WizardApp(workspace=args.workspace, model=model, low_bandwidth=low_bandwidth)
    except WizardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return cli.EXIT_USER_ERROR
    app.run()
    if app.training_goes_on:
        print(f"training goes on: xtuner-wizard attach {app.training_goes_on}")
    return int(app.return_code or 0)


if __name__ == "__main__":
    sys.exit(main())
