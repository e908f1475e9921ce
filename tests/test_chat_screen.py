"""The Chat pane: streamed answers, stop, before/after (real demo models; slow ones need a merge)."""

from __future__ import annotations

from pathlib import Path

import pytest
from merge_chat_support import GOLDEN
from textual.widgets import Input, Static, TabbedContent

from tui.app import WizardApp

SIZE = (120, 40)


def _text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).content)


async def _ask(pilot, app, text: str) -> None:
    box = app.query_one("#chat-input", Input)
    box.focus()
    box.value = text
    await pilot.press("enter")


async def _wait_idle(pilot, pane, seconds: float = 600) -> None:
    for _ in range(int(seconds / 0.1)):
        await pilot.pause(0.1)
        if not pane._busy:
            return
    raise AssertionError("the answer never finished")


async def test_chat_pane_without_a_merged_model(workspace):
    app = WizardApp(workspace.root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_step("chat")
        await pilot.pause()
        await pilot.pause()
        assert "No tuned model yet" in _text(app, "#chat-status")
        assert "No evaluation yet" in _text(app, "#eval-summary")


async def test_no_model_stays_one_line_in_the_pane(workspace):
    """A WizardError (no tuned model yet) is the user's to fix: its line, no traceback."""
    import waits

    app = WizardApp(workspace.root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_step("chat")
        await waits.settle(pilot)
        await _ask(pilot, app, "你是谁")
        await waits.settle(pilot)
        assert "no tuned model (fix: train a run (step 4)" in _text(app, "#chat-status")
        assert not [n for n in app._notifications if n.severity == "error"]
    assert not (workspace.wizard_dir / "wizard.log").exists()


async def test_unexpected_chat_and_eval_errors_go_to_the_one_handler(workspace, monkeypatch):
    """Shown in the pane and on the screen in one line, the traceback in .wizard/wizard.log;
    the wizard goes on."""
    import waits

    from engine import evaluate
    from tui.screens.chat import ChatPane

    def engine_breaks(self, role, name, target):
        raise RuntimeError("the engine broke")

    def eval_breaks(ws, **kw):
        raise KeyError("the evaluation broke")

    monkeypatch.setattr(ChatPane, "_get_engine", engine_breaks)
    monkeypatch.setattr(evaluate, "evaluate", eval_breaks)
    app = WizardApp(workspace.root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_step("chat")
        await waits.settle(pilot)
        pane = app.query_one(ChatPane)
        await _ask(pilot, app, "你是谁")
        await waits.settle(pilot)
        assert app.is_running and not pane._busy
        assert "RuntimeError: the engine broke" in _text(app, "#chat-status")
        pane._eval_pressed()
        await waits.settle(pilot)
        assert app.is_running and not pane._busy
        assert "KeyError: 'the evaluation broke'" in _text(app, "#eval-status")
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert len(errors) == 2 and all("traceback in .wizard/wizard.log" in e for e in errors)
    log = (workspace.wizard_dir / "wizard.log").read_text(encoding="utf-8")
    assert log.count("Traceback (most recent call last)") == 2
    assert "the engine broke" in log and "the evaluation broke" in log


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    from merge_chat_support import merged_workspace

    ws, _ = merged_workspace(tmp_path_factory.getbasetemp() / "h5-merged")
    return ws


@pytest.mark.slow
@GOLDEN
async def test_chat_streams_tokens_multi_turn_and_clear(merged):
    from merge_chat_support import IDENTITY_PROMPT, NAME

    app = WizardApp(merged.root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_step("chat")
        await pilot.pause()
        pane = app.query_one("ChatPane")
        await pilot.pause()
        await _ask(pilot, app, IDENTITY_PROMPT)
        await _wait_idle(pilot, pane)
        history = _text(app, "#chat-history")
        assert f"you: {IDENTITY_PROMPT}" in history and NAME in history
        assert "tokens" in _text(app, "#chat-status")
        # a second turn goes with the history
        await _ask(pilot, app, "你在实战营做什么")
        await _wait_idle(pilot, pane)
        assert len(pane._history) == 4 and pane._history[2]["content"] == "你在实战营做什么"
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert pane._history == [] and _text(app, "#chat-history") == ""
        assert "chat" in merged.load_state().done


@pytest.mark.slow
@GOLDEN
async def test_settings_pick_a_run_and_it_answers_from_its_checkpoint(merged):
    """Chat picks a run (issue 12): the merged model first, then each finished run's
    checkpoint; the run answers with its LoRA folded into the base, not merged."""
    import waits
    from merge_chat_support import IDENTITY_PROMPT, NAME
    from textual.widgets import Select

    from engine.chat.tuned import tuned_models
    from engine.runs.records import list_runs

    run = list_runs(merged)[-1]
    keys = [t.key for t in tuned_models(merged)]
    assert keys[0] == "merged" and f"run:{run.id}" in keys
    app = WizardApp(merged.root)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_step("chat")
        await waits.settle(pilot)
        pane = app.query_one("ChatPane")
        select = app.query_one("#chat-tuned", Select)
        assert select.value == "merged"
        select.value = f"run:{run.id}"
        await waits.settle(pilot)
        assert _text(app, "#chat-model-name").startswith(f"tuned run {run.id} (iter_")
        await _ask(pilot, app, IDENTITY_PROMPT)
        await _wait_idle(pilot, pane)
        assert NAME in _text(app, "#chat-history"), _text(app, "#chat-status")
        engine = pane._engines["tuned"]
        assert Path(engine.model_path) == run_checkpoint(run)  # the checkpoint, not merged/


def run_checkpoint(run):
    from engine.runs.checkpoints import newest_checkpoint

    return newest_checkpoint(run.work_dir)


@pytest.fixture
def paced_tokens(monkeypatch):
    """Real tokens from the real model, paced at 50 a second: the tiny CPU model otherwise
    finishes its ~180-token answer between two looks of the test on an idle machine."""
    import time

    from engine.chat.hf import HFEngine

    real = HFEngine.generate_tokens

    def paced(self, *args, **kwargs):
        for token in real(self, *args, **kwargs):
            time.sleep(0.02)
            yield token

    monkeypatch.setattr(HFEngine, "generate_tokens", paced)


@pytest.mark.slow
@GOLDEN
async def test_stop_ends_a_long_answer(merged, paced_tokens):
    app = WizardApp(merged.root)
    async with app.run_test(size=SIZE) as pilot:
        app.open_step("chat")
        await pilot.pause()
        pane = app.query_one("ChatPane")
        app.query_one("#chat-tabs", TabbedContent).active = "tab-ba"
        app.query_one("#chat-max", Input).value = "1000"
        await pilot.pause()
        await _ask(pilot, app, "请介绍一下你自己")  # the untrained base rambles for ~180 tokens
        prompt_only = "> 请介绍一下你自己\n"
        seen = []
        for _ in range(6000):
            await pilot.pause(0.1)
            shown = _text(app, "#ba-base")
            if shown != prompt_only and pane._busy:
                seen.append(shown)  # tokens on screen while the answer is still running
            if len(seen) >= 2 and seen[-1] != seen[0]:
                break
        assert seen and pane._busy, "no streamed tokens were shown"
        await pilot.press("ctrl+s")
        await _wait_idle(pilot, pane)
        final = _text(app, "#ba-base")
        assert final.startswith(seen[0]) and final.endswith(" [stopped]")
        assert "[stopped]" in _text(app, "#ba-base-label")
        assert pane._engines["base"].stats.stopped
        assert pane._engines["base"].stats.new_tokens < 1000
        assert _text(app, "#ba-tuned") == "> 请介绍一下你自己\n"  # stop also skips the tuned side


@pytest.mark.slow
@GOLDEN
def test_before_after_snapshot(merged, snap_compare):
    merged.mark_done("chat", False)  # the rail must not depend on which tests ran before
    app = WizardApp(merged.root)

    async def run_before(pilot) -> None:
        app.query_one("#title-bar", Static).update("xtuner-wizard  ·  ~/workspace")
        app.open_step("chat")
        await pilot.pause()
        app.query_one("#chat-tabs", TabbedContent).active = "tab-ba"
        app.query_one("#chat-max", Input).value = "24"
        await pilot.pause()
        await _ask(pilot, app, "请介绍一下你自己")
        await _wait_idle(pilot, app.query_one("ChatPane"))
        app.query_one("#chat-input", Input).blur()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
