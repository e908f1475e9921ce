"""The Config pane, driven through the real app with Pilot, and its SVG snapshot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import waits

from engine.config import TUTORIAL_BASE
from engine.workspace import Workspace
from tui.app import WizardApp

# A fixed folder: the paths in the diff and the title bar must not change between runs.
SNAP_WS = Path("/tmp/xtuner-wizard-snapshots/config-ws")
# The fixed folder is rewritten by several tests: under pytest-xdist they share one worker.
pytestmark = pytest.mark.xdist_group("test_config_tui")


@pytest.fixture(autouse=True)
def _two_cores(monkeypatch):
    """The dataset preparation follows the usable cores: the pane as on a 2-core machine."""
    monkeypatch.setenv("XTUNER_WIZARD_CPUS", "2")


TINY_MODEL = {
    "architectures": ["InternLM2ForCausalLM"],
    "model_type": "internlm2",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "intermediate_size": 512,
    "vocab_size": 2000,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}


def make_workspace(root: Path) -> Workspace:
    if root.exists():
        shutil.rmtree(root)
    ws = Workspace(root).ensure()
    ws.demo_model_dir.mkdir(parents=True)
    (ws.demo_model_dir / "config.json").write_text(json.dumps(TINY_MODEL))
    rec = {"conversation": [{"input": "请介绍一下你自己", "output": "我是伍鲜同志的小助手"}]}
    ws.data_dir.mkdir(parents=True)
    ws.dataset_path.write_text(json.dumps([rec] * 102, ensure_ascii=False), encoding="utf-8")
    ws.set_choice("model", "demo")
    ws.set_choice("profile", "cpu")  # the same pane on machines with and without GPUs
    ws.update_state(current_step="config")
    return ws


def _rendered(app) -> bool:
    """The Config step has shown the render of its form as it is now (the current token)."""
    panes = app.query("#config")
    if not panes:
        return False
    pane = panes.first()
    result = pane.last_result
    return result is not None and result.token == pane._token and pane._timer is None


async def settle(pilot) -> None:
    """Until the pane has shown the render of its current form and nothing else is pending
    (events, not time). A lost render (the pane once kept an old diff) fails here."""
    await waits.until(pilot, lambda: _rendered(pilot.app), "the Config step's render", timeout=60)
    await waits.settle(pilot)
    await waits.until(pilot, lambda: _rendered(pilot.app), "the Config step's render", timeout=60)


async def test_config_pane_renders_diff_and_writes(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    app = WizardApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pane = app.query_one("#config")
        result = pane.last_result
        assert result is not None and not result.error, result and result.error
        assert result.rendered.profile == "cpu"
        assert "+    dataset=dict(type=load_dataset" in result.diff
        # the demo's 256, packed shorter for 2 processes (as many samples as xtuner's 32 make)
        shown = app.query_one("#f-max_length").value
        assert shown == str(result.rendered.settings["max_length"]) and int(shown) < 256
        assert "+    map_num_proc=2," in result.diff

        # a field changed by hand becomes a --set override, and the diff follows it
        field = app.query_one("#f-max_length")
        field.focus()
        await pilot.press("end", "backspace", "backspace", "backspace", *"128")
        await settle(pilot)
        assert pane.overrides == {"max_length": "128"}
        assert "+max_length = 128" in pane.last_result.diff
        assert "map_num_proc" not in pane.last_result.diff  # the user's length: xtuner's 32

        # write: the tutorial's file name, the step done
        await pilot.press("ctrl+s")
        await settle(pilot)
        target = ws.root / f"{TUTORIAL_BASE}_copy.py"
        assert target.is_file() and "max_length = 128" in target.read_text()
        assert "config" in ws.load_state().done

        # a hand edit is not clobbered: ctrl+s asks, "n" keeps the file
        target.write_text(target.read_text() + "# mine\n", encoding="utf-8")
        edited = target.read_text()
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("n")
        await settle(pilot)
        assert target.read_text() == edited
        # "y" replaces it and keeps a backup
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert "# mine" not in target.read_text()
        assert any(b.read_text() == edited for b in ws.backups_dir.iterdir())

        # re-reading a hand-edited file puts its settings in the form
        target.write_text(target.read_text().replace("lr = 2e-3", "lr = 5e-4"), encoding="utf-8")
        pane.reread(target)
        await settle(pilot)
        assert app.query_one("#f-lr").value == "5e-4"
        assert pane.overrides.get("lr") == "5e-4"


def _iterations(pane) -> int:
    import re

    (line,) = [ln for ln in pane.last_result.estimate if "iter/epoch" in ln]
    return int(re.search(r"(\d+) in all", line).group(1))


async def test_the_estimate_counts_the_iterations_of_the_launch_choice(tmp_path, monkeypatch):
    """Two GPUs here: the GPUs field says 2 and the estimate is per 2 processes; 1 typed in
    it (what Train then launches) doubles the iterations."""
    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "NVIDIA H200:141,NVIDIA H200:141")
    ws = make_workspace(tmp_path / "ws")
    ws.set_choice("profile", "lora")
    rec = {"conversation": [{"input": "你好" * 20, "output": "我是小助手" * 20}]}
    ws.dataset_path.write_text(json.dumps([rec] * 400, ensure_ascii=False), encoding="utf-8")
    app = WizardApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        pane = app.query_one("#config")
        assert app.query_one("#launch-gpus").value == "2"
        two = _iterations(pane)
        app.query_one("#launch-gpus").value = "1"
        await settle(pilot)
        one = _iterations(pane)  # 3 epochs of S samples; per 2 processes 3 x ceil(S / 2)
        assert one % 3 == 0 and two == 3 * -(-one // 3 // 2) and one > two, (one, two)


async def test_unknown_setting_typed_in_the_form_is_reported(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    app = WizardApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.query_one("#f-lr").value = "fast"
        await settle(pilot)
        pane = app.query_one("#config")
        assert "not a Python value" in pane.last_result.error


@pytest.mark.skipif(not Path("/tmp").is_dir(), reason="needs /tmp")
def test_config_pane_snapshot(snap_compare, monkeypatch):
    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "none")  # the same pane with and without GPUs
    make_workspace(SNAP_WS)

    async def run_before(pilot) -> None:
        await settle(pilot)

    assert snap_compare(WizardApp(SNAP_WS), terminal_size=(120, 40), run_before=run_before)


async def test_the_form_opens_on_the_config_the_workspace_holds(tmp_path, monkeypatch):
    """A config written by `xtuner-wizard config --set lr=5e-4` opens with lr 5e-4 in the form."""
    from engine.config import render_config, write_config

    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "none")
    ws = make_workspace(tmp_path / "ws")
    rendered = render_config(
        model_path=ws.demo_model_dir,
        data_path=ws.dataset_path,
        profile="cpu",
        set_args=["lr=5e-4", "max_length=128"],
    )
    write_config(ws, rendered)
    app = WizardApp(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        pane = app.query_one("#config")
        assert app.query_one("#f-lr").value == "5e-4"
        assert app.query_one("#f-max_length").value == "128"
        assert pane.overrides == {"lr": "5e-4", "max_length": "128"}
        assert "+lr = 5e-4" in pane.last_result.diff


def test_edited_lines_put_the_tutorials_edits_before_the_wizards_plumbing():
    """At 80x24 the edits box shows ~16 rows: the model and dataset lines (the tutorial's
    edits) must come before the imports and runtime patches, which once pushed them out."""
    from tui.screens.config import edited_lines

    root = Path("/home/ada/ws")
    diff = "\n".join(
        [
            "--- a.py",
            "+++ b.py",
            "@@ -1,9 +1,9 @@",
            "+from mmengine.optim import OptimWrapper",
            '+__import__("mmengine.runner.loops", fromlist=["time"]).time = None  # patch',
            ' prompt_template = "x"',
            '-pretrained_model_name_or_path = "internlm/internlm2-chat-1_8b"',
            f'+pretrained_model_name_or_path = "{root}/demo-model"',
            "-    dataset=dict(type=load_dataset, path=alpaca_en_path),",
            "+    dataset=dict(type=load_dataset, path='json', data_files=dict(train=alpaca_en_path)),",
            '-alpaca_en_path = "tatsu-lab/alpaca"',
            f'+alpaca_en_path = "{root}/datas/assistant.json"',
        ]
    )
    lines = edited_lines(diff, root).plain.splitlines()
    assert lines[0] == "5 lines set by the wizard (./ is the workspace):"
    assert lines[1:5] == [
        '-pretrained_model_name_or_path = "internlm/internlm2-chat-1_8b"',
        '+pretrained_model_name_or_path = "./demo-model"',
        '-alpaca_en_path = "tatsu-lab/alpaca"',
        '+alpaca_en_path = "./datas/assistant.json"',
    ]
    assert lines[5].startswith("-    dataset=dict(") and lines[6].startswith("+    dataset=")
    assert lines[7] == "the wizard's imports and runtime patches:"
    assert lines[8] == "+from mmengine.optim import OptimWrapper"
