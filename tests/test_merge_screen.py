"""The Merge pane: what it shows before a run, and a real merge driven from it (slow)."""

from __future__ import annotations

import pytest
from merge_chat_support import GOLDEN
from textual.widgets import Static

from tui.app import WizardApp

SIZE = (120, 40)


def _text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).content)


async def test_merge_pane_without_runs(workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_step("merge")
        await pilot.pause()
        await pilot.pause()
        assert "No training run yet" in _text(app, "#merge-check")
        await pilot.click("#merge-start")  # nothing to merge: a warning, no crash
        await pilot.pause()
        assert "✓" not in _text(app, "#phase-convert")


async def test_a_run_without_a_whole_checkpoint_is_named_not_select_null(tmp_path):
    """The recorded run's checkpoints are empty placeholders (not whole): the checkpoint
    picker is empty, and the check must not look for a file named after its empty value."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_train_screen import install_recorded_run

    ws = install_recorded_run(tmp_path / "ws")
    ws.update_state(current_step="merge")
    app = WizardApp(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = _text(app, "#merge-check")
        assert "Select.NULL" not in text and "Cannot merge" in text, text


@pytest.mark.slow
@GOLDEN
async def test_merge_from_the_pane(tmp_path_factory):
    from merge_chat_support import merged_workspace

    ws, _ = merged_workspace(tmp_path_factory.getbasetemp() / "h5-merged")
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_step("merge")
        await pilot.pause()
        await pilot.pause()
        check = _text(app, "#merge-check")
        assert "template internlm2_chat" in check and "enough" in check
        assert "merged/ exists" in check
        await pilot.click("#merge-start")
        await pilot.pause()
        assert "press Merge again" in _text(app, "#merge-detail")
        await pilot.press("m")  # the step's key: Merge again
        for _ in range(1200):  # real pth_to_hf + merge + load check: minutes on a busy CPU
            await pilot.pause(0.25)
            if not app.query_one("MergePane")._merging:
                break
        detail = _text(app, "#merge-detail")
        assert "Merged model: merged/" in detail, detail + _text(app, "#merge-tail")
        for phase in ("convert", "merge", "save", "check"):
            assert _text(app, f"#phase-{phase}").startswith("✓")
        assert (ws.merged_dir / "xtuner_wizard.json").is_file()
        assert "merge" in ws.load_state().done
