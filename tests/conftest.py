"""Shared fixtures. Snapshot determinism: no cursor blink, no animations, fixed clock text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.workspace import Workspace

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _threads_per_worker() -> int:
    """`make test` runs pytest-xdist workers side by side: the trainers and models each starts
    share the cores instead of each taking all of them (oversubscribed OpenMP threads spin)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, len(os.sched_getaffinity(0)) // workers)


if "PYTEST_XDIST_WORKER" in os.environ:  # inherited by every trainer and model a test starts
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads_per_worker()))


def pytest_collection_modifyitems(config, items):
    """Modules with real runs first (each module kept together, for its module fixtures): the
    workers' last minutes are then short tests, not a lone training."""
    with_runs = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in with_runs)


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch):
    """Freeze Input cursors so SVG snapshots do not depend on when they were taken."""
    from textual.widgets import Input

    monkeypatch.setattr(Input, "cursor_blink", False, raising=False)
    yield


@pytest.fixture(autouse=True)
def _no_environment_autocheck(request, monkeypatch):
    """The Environment pane checks the machine on its own when the app opens and marks its step
    done at a moment that depends on the machine's load; other steps' tests and snapshots must
    not depend on that. Its own tests keep it on."""
    if "test_environment_screen" not in request.node.nodeid:
        from tui.screens.environment import EnvironmentPane

        monkeypatch.setattr(EnvironmentPane, "AUTO_CHECK", False)
    yield


@pytest.fixture
def replay(monkeypatch):
    """Runs started in this process train with the replay of a recorded real run
    (tests/replay_trainer.py): only xtuner is stood in for."""
    from replay_trainer import replay_argv

    from engine.runs import launch

    monkeypatch.setattr(launch, "train_env_and_argv", replay_argv)
    return monkeypatch


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """The offline demo model, built once per test session and only read."""
    from merge_chat_support import demo_model

    return demo_model(tmp_path_factory.getbasetemp())


# -- the whole tutorial, once per test session ------------------------------------------------
TUTORIAL_NAME = "伍鲜同志"
TUTORIAL_ANSWER = f"我是{TUTORIAL_NAME}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"


def wizard_cli(*args: str, timeout: float = 1800, cwd: Path | None = None):
    """Run the installed console script, as a user would."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("xtuner-wizard", path=str(Path(sys.executable).parent)) or "xtuner-wizard"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


@pytest.fixture(scope="session")
def tutorial_workspace(tmp_path_factory) -> Workspace:
    """The golden path (tests/merge_chat_support.py): `xtuner-wizard run-all` on the demo
    model, real training, merge and chat, once per session; shared and only read."""
    from merge_chat_support import golden_workspace

    return golden_workspace(tmp_path_factory.getbasetemp())
