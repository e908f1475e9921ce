"""The Data pane, driven through the real app: fill the form, watch the preview, write, refuse."""

from __future__ import annotations

import json

import waits
from textual.widgets import Input, Select, Static

from engine.data import dumps_dataset, generate_tutorial
from engine.workspace import Workspace
from tui.app import WizardApp
from tui.screens.data import DataPane
from tui.widgets.confirm import ConfirmReplace
from tui.widgets.step_rail import StepRail

SIZE = (120, 40)


def open_on_data(ws: Workspace) -> WizardApp:
    ws.update_state(current_step="data")  # start on the Data step (no environment checks)
    return WizardApp(ws.root)


async def settle(pilot) -> None:
    """Past the debounce, every worker done, every message handled."""
    await waits.settle(pilot)


async def type_into(pilot, widget_id: str, text: str) -> None:
    field = pilot.app.query_one(f"#{widget_id}", Input)
    field.focus()
    field.value = ""
    await pilot.press(*text)


def panel_text(app: WizardApp, widget_id: str) -> str:
    """A panel's text, its lines whole (a preview is a grid of Q/A marks and text)."""
    import io

    from rich.console import Console

    widget = app.query_one(f"#{widget_id}", Static)
    console = Console(width=400, file=io.StringIO(), record=True)  # lines whole
    console.print(widget.content)
    return console.export_text()


async def test_the_preview_follows_the_form(workspace):
    app = open_on_data(workspace)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(DataPane)
        await settle(pilot)
        assert "Your name: is empty (type your name)" in panel_text(app, "data-preview")

        await type_into(pilot, "name", "Ada")
        await settle(pilot)
        first = pane.last_preview
        assert first is not None and first.bundle is not None and first.error is None
        assert "Ada" in panel_text(app, "data-preview")
        assert "records 2000" in panel_text(app, "data-stats")

        await type_into(pilot, "assistant-name", "Kiwi")
        await type_into(pilot, "n", "300")
        await settle(pilot)
        second = pane.last_preview
        assert second is not first and len(second.bundle.train) == 300
        assert "Kiwi" in panel_text(app, "data-preview")
        assert "records 300" in panel_text(app, "data-stats")

        app.query_one("#style", Select).value = "tutorial"
        await settle(pilot)
        assert app.query_one("#maker", Input).disabled
        assert app.query_one("#n", Input).value == "300"  # the user's n is kept
        assert len(pane.last_preview.bundle.train) == 602
        assert "these 2 records, repeated" in panel_text(app, "data-preview")

        await type_into(pilot, "n", "x1")  # type=integer refuses the x
        await type_into(pilot, "name", "")
        await settle(pilot)
        assert "Your name: is empty" in panel_text(app, "data-preview")


async def test_write_saves_the_file_and_marks_the_step(workspace):
    app = open_on_data(workspace)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#style", Select).value = "tutorial"
        await type_into(pilot, "name", "Ada")
        await type_into(pilot, "n", "5")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (
            workspace.dataset_path.read_bytes()
            == dumps_dataset(generate_tutorial("Ada", 5)).encode()
        )
        assert "Wrote datas/assistant.json (12 records)" in panel_text(app, "data-status")
        assert app.query_one(StepRail).state_of("data") == "done"
    state = workspace.load_state()
    assert state.choices["data"] == "datas/assistant.json" and "data" in state.done
    held = json.loads(workspace.heldout_path.read_text(encoding="utf-8"))
    assert held["keywords"] == ["Ada"]


async def test_an_edited_file_is_never_overwritten_without_confirmation(workspace):
    mine = b'[{"conversation": [{"input": "hi", "output": "my own words"}]}]'
    workspace.dataset_path.parent.mkdir(parents=True)
    workspace.dataset_path.write_bytes(mine)
    app = open_on_data(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "name", "Ada")
        await settle(pilot)
        assert "not written by the wizard" in panel_text(app, "data-status")

        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmReplace)
        await pilot.press("n")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmReplace)
        assert workspace.dataset_path.read_bytes() == mine
        assert "Kept datas/assistant.json" in panel_text(app, "data-status")
        assert not workspace.backups_dir.exists()

        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmReplace)
        await pilot.press("y")
        await settle(pilot)
        assert "Ada" in workspace.dataset_path.read_text(encoding="utf-8")
        backups = list(workspace.backups_dir.iterdir())
        assert [b.read_bytes() for b in backups] == [mine]
        assert "your version is kept as .wizard/backups/" in panel_text(app, "data-status")


async def test_validate_lists_the_problems_of_a_file(workspace):
    bad = workspace.root / "datas" / "broken.json"
    bad.parent.mkdir(parents=True)
    records = [{"conversation": [{"input": "a", "output": ""}]}, {"conversation": [{"input": "b"}]}]
    bad.write_text(dumps_dataset(records), encoding="utf-8")
    before = bad.read_bytes()
    app = open_on_data(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "out", "datas/broken.json")
        await pilot.press("ctrl+o")
        await settle(pilot)
        text = panel_text(app, "data-problems")
        assert "2 problems:" in text
        assert "datas/broken.json:2: record 0.conversation[0].output: is empty" in text
        assert "datas/broken.json:10: record 1.conversation[0]: has no 'output'" in text
        assert "problems" in panel_text(app, "data-status")
    assert bad.read_bytes() == before


def test_data_pane_snapshot(workspace, snap_compare):
    app = open_on_data(workspace)

    async def run_before(pilot) -> None:
        app.query_one("#title-bar", Static).update("xtuner-wizard  ·  ~/workspace")  # no tmp path
        await type_into(pilot, "name", "Ada")
        await type_into(pilot, "assistant-name", "Kiwi")
        await type_into(pilot, "n", "500")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_statistics_count_tokens_with_the_chosen_models_tokenizer(workspace, tmp_path):
    from engine.demo import build_tokenizer

    model = tmp_path / "model"
    model.mkdir()
    build_tokenizer(model)  # the demo model's tokenizer is all the statistics need
    workspace.set_choice("model", str(model))
    app = open_on_data(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "name", "Ada")
        await settle(pilot)
        stats = app.query_one(DataPane).last_preview.stats
        assert stats.unit == "tokens" and stats.truncated == 0
        assert "tokens: median" in panel_text(app, "data-stats")
        assert "over max_length 2048: 0" in panel_text(app, "data-stats")


async def test_a_tokenizer_with_unconfirmed_code_is_not_loaded_characters_are_counted(
    workspace, tmp_path
):
    """A model folder that brings Python: its tokenizer does not load (that would run it) until
    its code is confirmed; the statistics count characters and say why."""
    from engine.demo import build_tokenizer
    from engine.trust import trust

    model = tmp_path / "model"
    model.mkdir()
    build_tokenizer(model)
    (model / "tokenization_evil.py").write_text("import os  # runs on load\n")
    workspace.set_choice("model", str(model))
    app = open_on_data(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, "name", "Ada")
        await settle(pilot)
        stats = app.query_one(DataPane).last_preview.stats
        assert stats.unit == "chars"
        text = panel_text(app, "data-stats")
        assert "characters, not tokens: the model's tokenizer code is not confirmed" in text
        assert "t in Environment" in text
        trust(workspace, model)  # as the Environment step's t does
        await type_into(pilot, "name", "Bo")
        await settle(pilot)
        assert app.query_one(DataPane).last_preview.stats.unit == "tokens"


async def test_the_form_opens_on_what_the_workspace_holds(workspace):
    """A file written by `data generate --style tutorial --n 50` opens as tutorial / 50."""
    from engine.data.generate import IdentityFacts, build_dataset, record_choice, write_dataset

    facts = IdentityFacts(name="伍鲜同志")
    record_choice(
        workspace, write_dataset(workspace, build_dataset("tutorial", facts, n=50)), facts
    )
    app = open_on_data(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.query_one("#style", Select).value == "tutorial"
        assert app.query_one("#n", Input).value == "50"
        assert app.query_one("#name", Input).value == "伍鲜同志"
        # the preview's answers whole, not cut at the width
        preview = panel_text(app, "data-preview")
        joined = "".join(line.strip() for line in preview.splitlines())
        assert "A 我是伍鲜同志的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦" in joined
