"""CLI: placeholder, filled in by the module's owner."""


def register(sub, parent):
    pass
