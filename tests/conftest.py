"""Shared fixtures. Snapshot determinism: no cursor blink, no animations, fixed clock text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.workspace import Workspace

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch):
    """Freeze Input cursors so SVG snapshots do not depend on when they were taken."""
    from textual.widgets import Input

    monkeypatch.setattr(Input, "cursor_blink", False, raising=False)
    yield


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()
