"""Start-up paints the screen once (issue 6: a first paint of at most 16 KB on a slow link).

The bytes themselves are measured by benchmarks/first_paint.py; these tests hold the behaviour
the number rests on: one full paint holding the rail, the loss history and the footer keys,
then nothing repainted but what changes; a rail and a footer that repaint only what changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import waits
from textual._compositor import Compositor

from engine.workspace import STEPS, Workspace
from tui.app import WizardApp
from tui.screens.train import TrainPane
from tui.widgets.keys_footer import KeysFooter
from tui.widgets.loss_chart import LossChart
from tui.widgets.step_rail import StepRail

sys.path.insert(0, str(Path(__file__).parent))
from test_train_screen import install_recorded_run, steady_host  # noqa: E402, F401


def _record_paints(monkeypatch) -> list[tuple[str, int, str]]:
    """(kind, cells, text) of every screen update the compositor renders."""
    paints: list[tuple[str, int, str]] = []
    full, partial = Compositor.render_full_update, Compositor.render_partial_update

    def render_full(self, simplify=False):
        update = full(self, simplify)
        text = "\n".join(
            "".join(seg.text for strip in line for seg in strip) for line in update.strips
        )
        paints.append(("full", self.size.area, text))
        return update

    def render_partial(self):
        cells = sum(region.area for region in self._dirty_regions)
        update = partial(self)
        if update is not None:
            paints.append(("partial", cells, ""))
        return update

    monkeypatch.setattr(Compositor, "render_full_update", render_full)
    monkeypatch.setattr(Compositor, "render_partial_update", render_partial)
    return paints


async def test_start_up_paints_the_train_step_once(tmp_path, steady_host, monkeypatch):  # noqa: F811
    ws = install_recorded_run(tmp_path / "ws")
    paints = _record_paints(monkeypatch)
    app = WizardApp(ws.root, low_bandwidth=True)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(TrainPane)
        # past the first poll of the run after the paint: what a tick repaints is counted too
        await waits.until(pilot, lambda: pane.ticks >= 1, "the first tick after the paint")
        await waits.settle(pilot)
        assert [kind for kind, _, _ in paints].count("full") == 1
        assert paints[0][0] == "full"
        first = paints[0][2]
        # The one full paint already holds the rail, the loss history and the footer's keys.
        assert "4 Train" in first and "6 Chat" in first
        assert "█" in first, "the chart was laid out before the first frame"
        assert "Quit" in first and "] Next" in first
        # Afterwards: at most the rail's highlighted row changing look as focus arrives.
        repainted = sum(cells for kind, cells, _ in paints[1:])
        assert repainted <= 20, paints[1:]
        chart = app.query_one(LossChart)
        assert any("█" in row for row in chart.column_text())


async def test_rail_keys_and_mouse_open_steps(workspace: Workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=(100, 30)) as pilot:
        rail = app.query_one(StepRail)
        assert app.focused is rail and app.current_step == "environment"
        await pilot.press("down", "down")
        assert app.current_step == "config" and rail.highlighted == 2
        await pilot.press("up")
        assert app.current_step == "data"
        await pilot.press("end")
        assert app.current_step == "chat"
        await pilot.press("down")  # no wrap-around
        assert app.current_step == "chat"
        await pilot.press("home")
        assert app.current_step == "environment"
        await pilot.press("right_square_bracket")  # the app's key moves the rail too
        assert rail.highlighted == 1 and app.current_step == "data"
        assert await pilot.click(StepRail, offset=(3, 2))  # the third row: Config
        await pilot.pause()
        assert app.current_step == "config"
        assert app.focused is not rail, "a click goes into the step, as Enter does"
    assert workspace.load_state().current_step == "config"


async def test_rail_rows_show_each_steps_state(workspace: Workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=(100, 30)) as pilot:
        rail = app.query_one(StepRail)
        assert rail.row_text(STEPS.index("config")) == " · 3 Config"
        app.mark_step_done("config")
        app.set_step_status("train", "failed")
        await pilot.pause()
        assert rail.row_text(STEPS.index("config")) == " ✔ 3 Config"
        assert rail.row_text(STEPS.index("train")) == " ✘ 4 Train"
        app.set_step_status("train", None)
        assert rail.row_text(STEPS.index("train")) == " · 4 Train"


async def test_footer_recomposes_only_when_its_keys_change(workspace: Workspace, monkeypatch):
    recomposed = []
    original = KeysFooter.recompose

    async def counting(self):
        recomposed.append(self.app.focused)
        await original(self)

    monkeypatch.setattr(KeysFooter, "recompose", counting)
    app = WizardApp(workspace.root)
    async with app.run_test(size=(110, 34)) as pilot:
        await waits.settle(pilot)
        footer = app.query_one(KeysFooter)
        assert recomposed == [], "start-up shows the keys in the first frame, once"
        assert "Quit" in str([k.description for k in footer.query("FooterKey")])
        await pilot.press("down")  # the Data step, from the rail: its keys appear
        await waits.until(pilot, lambda: len(recomposed) >= 1, "the Data step's keys")
        await waits.settle(pilot)
        assert len(recomposed) == 1
        assert "Write file" in [k.description for k in footer.query("FooterKey")]
        app.refresh_bindings()  # asked again, same keys: nothing redrawn
        await waits.settle(pilot)
        assert len(recomposed) == 1
        await pilot.press("enter")  # into the name field: esc and where q ? ] [ went
        await waits.until(pilot, lambda: len(recomposed) >= 2, "the field's keys")
        await waits.settle(pilot)
        assert len(recomposed) == 2
        assert "then q ? ] [" in [k.description for k in footer.query("FooterKey")]
        await pilot.press("escape")
        await waits.until(pilot, lambda: len(recomposed) >= 3, "the step's keys again")
        await waits.settle(pilot)
        assert len(recomposed) == 3
