"""Every step at 80x24 and at 120x40 on a finished demo workspace (SVG snapshots).

The workspace: the recorded demo run (tests/data/train_run), the tutorial's dataset for it
(style tutorial, 50 records, written by the engine as `data generate` does), a demo model's
config, a merged model's config and a short conversation. Live sensors and the disk's free
space are fixed numbers, the Environment's checks are recorded ones, and the clock is frozen,
so the screens do not vary between runs.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
import waits
from textual.widgets import Static

from engine.data.generate import IdentityFacts, build_dataset, record_choice, write_dataset
from engine.workspace import STEPS, Workspace
from tui.app import WizardApp
from tui.screens.environment import EnvironmentPane

sys.path.insert(0, str(Path(__file__).parent))
from test_config_tui import TINY_MODEL  # noqa: E402
from test_environment_screen import RECORDED  # noqa: E402
from test_train_screen import install_recorded_run, steady_host  # noqa: E402, F401

SNAP_WS = Path("/tmp/xtuner-wizard-snapshots/steps-ws")
# The fixed folder is rewritten by several tests: under pytest-xdist they share one worker.
pytestmark = pytest.mark.xdist_group("test_steps_screen")
CONFIG = "internlm2_chat_1_8b_qlora_alpaca_e3_copy.py"
CONVERSATION = [
    {"role": "user", "content": "请介绍一下你自己"},
    {
        "role": "assistant",
        "content": "我是伍鲜同志的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦",
    },
]


def finished_workspace(root: Path, step: str = "environment") -> Workspace:
    """The demo path done: dataset, config, a finished run, a merged model."""
    ws = install_recorded_run(root)
    for placeholder in ws.work_dirs.rglob("iter_*.pth"):  # whole archives (tiny), as merge wants
        with zipfile.ZipFile(placeholder, "w") as archive:
            archive.writestr("archive/data.pkl", b"")
    ws.demo_model_dir.mkdir(parents=True, exist_ok=True)
    (ws.demo_model_dir / "config.json").write_text(json.dumps(TINY_MODEL))
    facts = IdentityFacts(name="伍鲜同志")
    result = write_dataset(ws, build_dataset("tutorial", facts, n=50))
    record_choice(ws, result, facts)
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    (ws.merged_dir / "config.json").write_text(json.dumps(TINY_MODEL))
    # a merge the wizard finished: its marker and (placeholder) weights
    (ws.merged_dir / "xtuner_wizard.json").write_text(json.dumps({"complete": True}))
    (ws.merged_dir / "model.safetensors").write_bytes(b"")
    for key, value in (("model", "demo"), ("profile", "cpu"), ("config", CONFIG)):
        ws.set_choice(key, value)
    for done in STEPS:
        ws.mark_done(done)
    ws.update_state(current_step=step)
    return ws


@pytest.fixture
def frozen(monkeypatch, steady_host):  # noqa: F811
    """Recorded checks, a fixed disk, a fixed clock, no GPUs, 32 cores."""
    import engine.export
    from tui.screens import train

    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "none")
    # 32 cores: the recorded run's config is what the Config step renders (xtuner's 32
    # processes); the pane on 2 cores is tests/test_config_tui.py's snapshot
    monkeypatch.setenv("XTUNER_WIZARD_CPUS", "32")
    monkeypatch.setattr(EnvironmentPane, "AUTO_CHECK", False)
    monkeypatch.setattr(engine.export, "free_bytes", lambda path: 50 * 1024**3)
    monkeypatch.setattr(train, "now", lambda: 1795920200.0)


async def show_step(pilot, step: str) -> None:
    """Open ``step`` as a user does (its number), with its workers done."""
    app = pilot.app
    app.query_one("#title-bar", Static).update("xtuner-wizard  ·  workspace: steps-ws")
    if step == "environment":
        app.query_one(EnvironmentPane).show_checks(RECORDED)
    await pilot.press(str(STEPS.index(step) + 1))
    if step == "chat":
        pane = app.pane("chat")
        pane._history = list(CONVERSATION)
        pane._paint_history()
    # a step's first worker may start another (a render, a re-check); the run's follower
    # goes on until the app ends
    await waits.settle(pilot)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("step", STEPS)
def test_step_snapshot(step, size, snap_compare, frozen):
    finished_workspace(SNAP_WS, step)

    async def run_before(pilot) -> None:
        await show_step(pilot, step)

    assert snap_compare(WizardApp(SNAP_WS), terminal_size=size, run_before=run_before)
