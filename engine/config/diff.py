"""The unified diff of a rendered config against the built-in it came from."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config.api import RenderedConfig


def unified_diff(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
        n=context,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def diff_text(rendered: RenderedConfig, context: int = 3) -> str:
    """Unified diff: the built-in (``a/<base>.py``) against the rendered copy."""
    return unified_diff(
        rendered.base_text,
        rendered.text,
        f"a/{rendered.base_name}.py",
        f"b/{rendered.default_filename}",
        context,
    )


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added lines of a unified diff (without the +/- marks)."""
    removed, added = [], []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
    return removed, added
