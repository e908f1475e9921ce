"""The wizard's shell: the rail, moving between steps, reopening where the user left."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import waits

from engine.workspace import STEPS, Workspace
from tui.app import WizardApp
from tui.widgets.step_rail import StepRail

sys.path.insert(0, str(Path(__file__).parent))


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


# -- issue 13: a worker's exception never ends the wizard -------------------------------------
def _config_workspace(ws: Workspace, dataset: str) -> Workspace:
    from test_config_tui import TINY_MODEL

    ws.demo_model_dir.mkdir(parents=True)
    (ws.demo_model_dir / "config.json").write_text(json.dumps(TINY_MODEL))
    ws.data_dir.mkdir(parents=True, exist_ok=True)
    ws.dataset_path.write_text(dataset, encoding="utf-8")
    ws.set_choice("model", "demo")
    ws.set_choice("profile", "cpu")
    return ws


async def test_a_hand_broken_dataset_and_the_config_step_do_not_quit_the_wizard(
    workspace: Workspace, monkeypatch
):
    from tui.screens.config import ConfigPane

    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "none")
    ws = _config_workspace(workspace, '[{"conversation": [{"input": "hi", "output": ')  # cut

    def estimate_fails(self, rendered, data, gpus=1):  # what a dataset read used to raise here
        json.loads(data.read_text(encoding="utf-8"))

    monkeypatch.setattr(ConfigPane, "_estimate", estimate_fails)
    app = WizardApp(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")  # the Config step renders and estimates in a worker
        await waits.settle(pilot)
        assert app.is_running and app.current_step == "config"
        shown = [n.message for n in app._notifications]
        errors = [m for m in shown if "traceback in .wizard/wizard.log" in m]
        assert len(errors) == 1, shown
        line = errors[0].splitlines()[0]
        assert line.startswith("JSONDecodeError: ") or "assistant.json" in line, line
        await pilot.press("2")  # and the wizard goes on
        assert app.current_step == "data"
    log = (ws.wizard_dir / "wizard.log").read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in log and "config: _render_config" in log


async def test_a_wizard_error_from_a_worker_shows_its_message_and_fix(workspace: Workspace):
    from engine.errors import WizardError

    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.pane("environment")

        def fails() -> None:
            raise WizardError("the disk is full", where="datas/x.json", fix="free some space")

        worker = pane.run_worker(fails, thread=True, exit_on_error=False, name="probe")
        while not worker.is_finished:
            await pilot.pause(0.05)
        await pilot.pause()
        assert app.is_running
        (note,) = [n for n in app._notifications if n.severity == "error"]
        assert note.message.splitlines()[0] == (
            "datas/x.json: the disk is full (fix: free some space)"
        )
    assert (
        "WizardError: datas/x.json: the disk is full"
        in (workspace.wizard_dir / "wizard.log").read_text()
    )


# -- issue 14: one focus model, the footer, help, palette, quitting ----------------------------
def footer_keys(app: WizardApp) -> list[str]:
    from tui.widgets.keys_footer import KeysFooter

    return [
        f"{k.key_display or k.key} {k.description}"
        for k in app.query_one(KeysFooter).query("FooterKey")
    ]


async def test_a_steps_keys_work_from_the_rail_and_the_footer_names_them(workspace: Workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down", "down")  # the rail's own moves: focus stays there
        assert app.current_step == "train" and isinstance(app.focused, StepRail)
        await pilot.pause()
        keys = " · ".join(footer_keys(app))
        for shown in ("s Start", "x Stop", "r Resume", "q Quit", "? Help", "] Next", "[ Prev"):
            assert shown in keys, keys
        await pilot.press("s")  # no config yet: the Train step's own answer, not silence
        await pilot.pause()
        assert any("No config yet" in n.message for n in app._notifications)


async def test_inside_a_field_the_footer_says_how_to_reach_q_and_the_steps(workspace: Workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")  # opens Data on its main control: the name field
        assert app.focused is not None and app.focused.id == "name"
        await pilot.pause()
        keys = " · ".join(footer_keys(app))
        assert "esc then q ? ] [" in keys and "^s Write file" in keys, keys
        await pilot.press("q", "escape", "right_square_bracket")  # q is typed; esc, then ]
        assert app.query_one("#name").value == "q"
        assert app.current_step == "config"
        assert app.focused is not None and app.focused.id == "cfg-diff-box"


async def test_help_shows_the_open_steps_keys_and_what_comes_next(workspace: Workspace):
    from tui.widgets.help import HelpScreen

    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        assert "Step 4 of 6: Train" in text
        for shown in ("Start", "Stop", "Resume", "Next", "Merge", "] / ["):
            assert shown in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_the_palette_offers_every_step_and_the_wizards_actions(workspace: Workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in (
            "Open step 1: Environment",
            "Open step 6: Chat",
            "Write the dataset",
            "Write the config",
            "Start training",
            "Stop training",
            "Resume training",
            "Merge",
            "Ask the tuned model",
        ):
            assert title in titles
        ask = next(
            c for c in app.get_system_commands(app.screen) if c.title == "Ask the tuned model"
        )
        ask.callback()
        await pilot.pause()
        assert app.current_step == "chat" and app.focused.id == "chat-input"


async def test_quitting_while_a_run_trains_says_so_once_then_quits(
    workspace: Workspace, monkeypatch
):
    import engine.runs.launch

    class Running:
        id = "20261202-120000"
        active = True

    monkeypatch.setattr(engine.runs.launch, "active_runs", lambda ws: [Running()])
    app = WizardApp(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running
        (note,) = [n for n in app._notifications if n.title == "Training goes on"]
        assert "xtuner-wizard attach 20261202-120000" in note.message
        await pilot.press("ctrl+c")  # the same as q
        await pilot.pause()
    assert app.training_goes_on == "20261202-120000"


def test_the_shell_is_told_where_training_goes_on(workspace: Workspace, monkeypatch, capsys):
    from tui import launcher

    def run(self) -> None:
        self.training_goes_on = "20261202-120000"

    monkeypatch.setattr(WizardApp, "run", run)
    assert launcher.main(["--workspace", str(workspace.root)]) == 0
    assert capsys.readouterr().out == "training goes on: xtuner-wizard attach 20261202-120000\n"
