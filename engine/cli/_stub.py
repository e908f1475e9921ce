"""Placeholder for commands not built yet (replaced module by module)."""

from engine.errors import WizardError


def not_built(args):
    raise WizardError(f"'{args.command}' is not built yet", fix="see the README for what works")
