"""The wizard's shell: the rail, moving between steps, reopening where the user left."""

from __future__ import annotations

from engine.workspace import STEPS, Workspace
from tui.app import WizardApp
from tui.widgets.step_rail import StepRail


async def test_rail_walks_every_step_and_remembers_the_last(workspace: Workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.current_step == "environment"
        for expected in STEPS[1:]:
            # ] opens the next step and focuses its main control; inside a field (Data's
            # name, Chat's question) esc first, as the footer says
            if app.focused is not None and app.focused.check_consume_key("q", "q"):
                await pilot.press("escape")
            await pilot.press("right_square_bracket")
            assert app.current_step == expected
        await pilot.press("escape", "3")
        assert app.current_step == "config"
    assert workspace.load_state().current_step == "config"

    reopened = WizardApp(workspace.root)
    async with reopened.run_test(size=(100, 30)):
        assert reopened.current_step == "config"


async def test_done_steps_show_on_the_rail(workspace: Workspace):
    workspace.mark_done("data")
    app = WizardApp(workspace.root)
    async with app.run_test(size=(100, 30)) as pilot:
        rail = app.query_one(StepRail)
        assert rail.state_of("data") == "done"
        assert rail.state_of("config") == "todo"
        app.mark_step_done("config")
        await pilot.pause()
        assert rail.state_of("config") == "done"
    assert {"data", "config"} <= set(workspace.load_state().done)  # + environment once checked


async def test_enter_on_the_rail_moves_into_the_step_and_escape_back(workspace: Workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=(110, 34)) as pilot:
        await pilot.press("down")  # the rail's own move: focus stays on the rail
        assert isinstance(app.focused, StepRail) and app.current_step == "data"
        await pilot.press("enter")
        assert app.focused is not None and app.focused.id == "name"
        await pilot.press("A", "d", "a")
        assert app.query_one("#name").value == "Ada"
        await pilot.press("escape")
        assert isinstance(app.focused, StepRail)
