"""Text as the screens show it (shared by the steps, which never import each other)."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"<\|[A-Za-z_]{1,24}\|>|</?s>|<\|endoftext\|>")
_ROLES = {"user", "assistant", "system"}


def without_tokens(text: str) -> str:
    """A chat template's text as a reader wants it: no special tokens (``<|im_end|>``,
    ``<s>``) and no lines left holding only the role they introduced."""
    lines = [_TOKEN.sub("", line).rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line.strip() and line.strip() not in _ROLES)
