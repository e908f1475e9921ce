"""One error type for everything the user can fix: a message, where, and the fix."""

from __future__ import annotations


class WizardError(Exception):
    """A problem the user can act on. ``str()`` gives one line: where, what, and the fix."""

    def __init__(self, message: str, *, fix: str | None = None, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.where = where

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class HandEditedError(WizardError):
    """Refusing to overwrite a file the user changed since the wizard wrote it."""


class WriteFailed(WizardError, OSError):
    """A write the user can fix (full disk, read-only folder, no permission): one line.

    Also an ``OSError``, so code that already handles failed writes keeps doing so.
    """
