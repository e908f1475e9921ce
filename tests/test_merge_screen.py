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


def _recorded_run_at_merge(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_train_screen import install_recorded_run

    ws = install_recorded_run(tmp_path / "ws")
    ws.update_state(current_step="merge")
    return ws


async def test_an_unexpected_merge_error_goes_to_the_one_handler(tmp_path, monkeypatch):
    """Shown on the pane and on the screen in one line, its traceback in .wizard/wizard.log;
    the wizard goes on."""
    import waits

    from engine import export

    def boom(ws, **kw):
        raise RuntimeError("the merge broke unexpectedly")

    monkeypatch.setattr(export, "convert_and_merge", boom)
    ws = _recorded_run_at_merge(tmp_path)
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await waits.settle(pilot)
        pane = app.query_one("MergePane")
        run_id = str(app.query_one("#merge-run").value)
        pane._merging = True
        pane._merge_worker(run_id, None)
        await waits.settle(pilot)
        assert app.is_running and not pane._merging
        assert "RuntimeError: the merge broke unexpectedly" in _text(app, "#merge-detail")
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and "traceback in .wizard/wizard.log" in errors[0], errors
    log = (ws.wizard_dir / "wizard.log").read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in log and "the merge broke unexpectedly" in log


async def test_a_wizard_error_of_the_merge_stays_one_line_on_the_pane(tmp_path, monkeypatch):
    import waits

    from engine import export
    from engine.errors import WizardError

    def refused(ws, **kw):
        raise WizardError("no base model", where="--base", fix="pass --base DIR")

    monkeypatch.setattr(export, "convert_and_merge", refused)
    ws = _recorded_run_at_merge(tmp_path)
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await waits.settle(pilot)
        pane = app.query_one("MergePane")
        pane._merging = True
        pane._merge_worker(str(app.query_one("#merge-run").value), None)
        await waits.settle(pilot)
        assert "--base: no base model (fix: pass --base DIR)" in _text(app, "#merge-detail")
        assert not [n for n in app._notifications if n.severity == "error"]
    assert not (ws.wizard_dir / "wizard.log").exists()


async def test_the_check_says_the_replaced_model_is_kept_as_merged_previous(tmp_path, monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    import waits

    from engine import export

    base = Path(tmp_path / "base")
    monkeypatch.setattr(
        export,
        "resolve_source",
        lambda ws, **kw: SimpleNamespace(base_model=base, prompt_template="internlm2_chat"),
    )
    monkeypatch.setattr(export, "check_full_precision", lambda path: None)
    monkeypatch.setattr(export, "estimate_merged_bytes", lambda path: 1)
    monkeypatch.setattr(export, "free_bytes", lambda path: 2)
    ws = _recorded_run_at_merge(tmp_path)
    ws.merged_dir.mkdir()
    app = WizardApp(ws.root)
    async with app.run_test(size=SIZE) as pilot:
        await waits.settle(pilot)
        check = _text(app, "#merge-check")
        assert "the old one is kept as merged.previous/" in check, check
        assert "moved aside" not in check and "<time>" not in check
        assert "moved aside" not in app.query_one("MergePane").WHAT


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


async def test_the_run_offered_first_is_the_one_merge_takes(tmp_path):
    """A newer run stopped before its first checkpoint is not offered first: the pane defaults
    to the newest finished run with a whole checkpoint, the one `merge` takes (issue 12: Merge
    once defaulted to the newest run)."""
    import sys
    from pathlib import Path

    from textual.widgets import Select

    sys.path.insert(0, str(Path(__file__).parent))
    from test_train_screen import install_recorded_run
    from train_support import write_checkpoint

    from engine.runs.control import run_to_merge
    from engine.runs.records import RunRecord, list_runs

    ws = install_recorded_run(tmp_path / "ws")
    (recorded,) = list_runs(ws)
    for name in ("iter_32.pth", "iter_40.pth"):  # whole archives, as torch.save writes them
        write_checkpoint(Path(recorded.work_dir) / name)
    newer = RunRecord(
        id="20261130-091500",
        workspace=str(ws.root),
        config=recorded.config,
        work_dir=str(ws.work_dirs / "20261130-091500"),
        command="xtuner train internlm2_chat_1_8b_qlora_alpaca_e3_copy.py",
        state="stopped",
        started=recorded.ended + 3600,
        ended=recorded.ended + 3660,
        exit_code=-2,
        cause_kind="stopped",
        cause="stopped on request",
    )
    newer.run_dir.mkdir(parents=True, exist_ok=True)
    newer.save()
    assert run_to_merge(ws).id == recorded.id
    ws.update_state(current_step="merge")
    app = WizardApp(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.pause()
        select = app.query_one("#merge-run", Select)
        assert select.value == recorded.id
        assert app.query_one("#merge-ckpt", Select).value.endswith("iter_40.pth")


async def test_older_merged_models_are_listed_with_sizes_and_d_removes_them(tmp_path, monkeypatch):
    """One previous model is kept (merged.previous/); the older ones pile up (3.6 GB each
    for a 1.8B model): the check names them with their size and d removes them after asking,
    n keeping them (issue 13)."""
    from pathlib import Path
    from types import SimpleNamespace

    import waits

    from engine import export
    from tui.widgets.confirm import ConfirmRemove

    base = Path(tmp_path / "base")
    monkeypatch.setattr(
        export,
        "resolve_source",
        lambda ws, **kw: SimpleNamespace(base_model=base, prompt_template="internlm2_chat"),
    )
    monkeypatch.setattr(export, "check_full_precision", lambda path: None)
    monkeypatch.setattr(export, "estimate_merged_bytes", lambda path: 1)
    monkeypatch.setattr(export, "free_bytes", lambda path: 2)
    ws = _recorded_run_at_merge(tmp_path)
    for name, size in (("merged", 10), ("merged.previous", 20), ("merged.previous-1", 3000)):
        folder = ws.root / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * size)
    app = WizardApp(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await waits.settle(pilot)
        check = _text(app, "#merge-check")
        assert "older models (2.9 KB): merged.previous-1: d removes them" in " ".join(
            check.split()
        ), check
        await pilot.press("d")
        await waits.until(pilot, lambda: isinstance(app.screen, ConfirmRemove), "the question")
        await pilot.press("n")
        await waits.settle(pilot)
        assert (ws.root / "merged.previous-1").is_dir()
        await pilot.press("d")
        await waits.until(pilot, lambda: isinstance(app.screen, ConfirmRemove), "the question")
        await pilot.press("y")
        await waits.until(pilot, lambda: "Removed 1 older" in _text(app, "#merge-detail"), "it")
        await waits.settle(pilot)
        assert "older models" not in _text(app, "#merge-check")
    assert not (ws.root / "merged.previous-1").exists()
    assert (ws.root / "merged.previous").is_dir() and (ws.root / "merged").is_dir()
