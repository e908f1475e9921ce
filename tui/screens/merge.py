"""The Merge step: a run's checkpoint -> adapter (hf/) -> merged model (merged/), checked.

engine.export does the work (xtuner's pth_to_hf and merge as child processes); a worker thread
runs it and posts one coalescing progress message per change. Before starting, the pane shows
the disk check and what happens to an existing merged/ (kept as merged.previous/, after a
confirmation; older ones are listed with their sizes, and d removes them after asking, as
``merge --keep N`` does on the command line). A worker's unexpected exception goes
to the app's one handler (tui.app.WizardApp.report_error).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Label, Select, Static

from tui.step import StepPane

PHASE_ORDER = ("convert", "merge", "save", "check")
MARKS = {"todo": "·", "active": "▶", "done": "✓", "failed": "✗"}


class MergeProgress(Message):
    """A phase change or a new detail line from the merge worker (a newer one replaces it)."""

    def __init__(self, phase: str, detail: str) -> None:
        super().__init__()
        self.phase = phase
        self.detail = detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MergeProgress) and message.phase == self.phase


class MergeFinished(Message):
    def __init__(self, out: Path | None, error: str | None = None, tail: list[str] | None = None):
        super().__init__()
        self.out = out
        self.error = error
        self.tail = tail or []


class MergePane(StepPane):
    step_id = "merge"
    title = "Merge"
    WHAT = (
        "Turns a run's checkpoint into a model: the LoRA adapter (hf/, xtuner convert "
        "pth_to_hf), merged into the full-precision base model (merged/, xtuner convert "
        "merge, safetensors), then loaded with transformers as a check. m merges the chosen "
        "run's checkpoint (twice when merged/ exists: the old one is kept as merged.previous/)."
    )
    NEXT = "Once merged: ] opens Chat, where you ask the tuned model who it is."
    MAIN = "#merge-start"

    BINDINGS = [
        Binding("m", "merge", "Merge"),
        Binding("r", "refresh", "Refresh"),
        Binding("d", "remove_older", "Remove old"),
    ]

    DEFAULT_CSS = """
    MergePane #merge-intro { height: auto; color: $text-muted; }
    MergePane #merge-pick { height: 1; margin: 1 0; }
    MergePane #merge-pick Select { width: 1fr; }
    MergePane #merge-pick SelectCurrent #label { text-wrap: nowrap; text-overflow: ellipsis; }
    MergePane #merge-pick Label { padding: 0 1 0 0; }
    MergePane #merge-check { height: auto; }
    MergePane .merge-phase { height: 1; }
    MergePane #merge-detail { height: 1; color: $text-muted; }
    MergePane #merge-tail { height: auto; max-height: 12; color: $error; }
    MergePane #merge-buttons { height: 1; margin: 1 0; }
    MergePane #merge-buttons Button { margin-right: 2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._states = dict.fromkeys(PHASE_ORDER, "todo")
        self._confirm_overwrite = False
        self._merging = False

    def compose(self) -> ComposeResult:
        from engine.export import PHASE_TITLES

        yield Static(
            "Checkpoint -> adapter (hf/) -> merged model (merged/), loaded as a check.",
            id="merge-intro",
        )
        with Horizontal(id="merge-pick"):
            yield Label("Run")
            yield Select([], prompt="no runs yet", id="merge-run", allow_blank=True, compact=True)
            yield Label("Checkpoint")
            yield Select(
                [], prompt="last checkpoint", id="merge-ckpt", allow_blank=True, compact=True
            )
        yield Static("", id="merge-check")
        for phase in PHASE_ORDER:
            yield Static(
                f"{MARKS['todo']} {PHASE_TITLES[phase]}", id=f"phase-{phase}", classes="merge-phase"
            )
        yield Static("", id="merge-detail")
        with Horizontal(id="merge-buttons"):
            yield Button("Merge (m)", id="merge-start", variant="primary", compact=True)
            yield Button("Refresh (r)", id="merge-refresh", compact=True)
        yield Static("", id="merge-tail")

    # -- what can be merged ------------------------------------------------------------
    def on_step_shown(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        from engine.runs.control import refresh, run_to_merge
        from engine.runs.records import list_runs

        runs = [refresh(r) for r in list_runs(self.workspace)]  # states as they are now
        select = self.query_one("#merge-run", Select)
        options = [(f"{r.id} {r.state}", r.id) for r in reversed(runs)]
        current = select.value
        select.set_options(options)
        if options:
            ids = [o[1] for o in options]
            # the default is the one `merge` takes: the newest finished run with a whole
            # checkpoint, not a newer one stopped before its first save (engine's one rule)
            chosen = run_to_merge(self.workspace).id
            select.value = current if current in ids else (chosen if chosen in ids else ids[0])
        self._fill_checkpoints()
        self._show_check()

    def _selected_run(self):
        from engine.runs.records import get_run

        value = self.query_one("#merge-run", Select).value
        if not isinstance(value, str):  # Select.NULL: nothing chosen (no runs)
            return None
        try:
            return get_run(self.workspace, str(value))
        except Exception:
            return None

    def _fill_checkpoints(self) -> None:
        from engine.export import checkpoints_of

        record = self._selected_run()
        select = self.query_one("#merge-ckpt", Select)
        ckpts = checkpoints_of(Path(record.work_dir)) if record else []
        select.set_options([(p.name, str(p)) for p in reversed(ckpts)])
        if ckpts:
            select.value = str(ckpts[-1])

    @on(Select.Changed, "#merge-run")
    def _run_changed(self) -> None:
        self._fill_checkpoints()
        self._show_check()

    def _show_check(self) -> None:
        from engine.errors import WizardError
        from engine.export import (
            _human,
            check_full_precision,
            estimate_merged_bytes,
            free_bytes,
            resolve_source,
        )

        ws = self.workspace
        line = self.query_one("#merge-check", Static)
        record = self._selected_run()
        if record is None:
            line.update("No training run yet: train first (step 4), then merge here.")
            return
        try:
            src = resolve_source(ws, run=record.id, checkpoint=self._checkpoint())
            check_full_precision(src.base_model)
            needed = estimate_merged_bytes(src.base_model)
            free = free_bytes(ws.merged_dir.parent)
        except WizardError as exc:
            line.update(Text.assemble(("Cannot merge: ", "bold"), str(exc)))
            return
        ok = "enough" if free >= needed else "NOT enough"
        text = (
            f"base {src.base_model.name} · template {src.prompt_template or '?'} · "
            f"disk: needs ~{_human(needed)}, {_human(free)} free ({ok})"
        )
        if ws.merged_dir.exists():
            text += (
                "\nmerged/ exists: the new model replaces it once whole, and the old one is "
                "kept as merged.previous/ (press Merge twice)."
            )
            older = self._older()
            if older:
                total = _human(sum(size for _, size in older))
                names = ", ".join(ws.rel(path) for path, _ in older)
                text += f"\nolder models ({total}): {names}: d removes them (asks first)."
            if "merge" in ws.load_state().done and not self._merging:
                text += "\nNext: ] Chat asks the merged model."
        line.update(Text(text))

    def _older(self) -> list[tuple[Path, int]]:
        from engine.export import older_merges

        return older_merges(self.workspace.merged_dir)

    def action_remove_older(self) -> None:
        """d: remove the merged models older than merged.previous/, after asking."""
        from engine.export import _human

        if self._merging:
            return
        older = self._older()
        if not older:
            self.app.notify("No older merged models: merged.previous/ is the one kept.")
            return
        from tui.widgets.confirm import ConfirmRemove

        def answered(remove: bool | None) -> None:
            if remove:
                self._remove_worker()
            else:
                self.query_one("#merge-detail", Static).update("Kept the older models.")

        shown = [(self.workspace.rel(path), _human(size)) for path, size in older]
        self.app.push_screen(ConfirmRemove(shown), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="merge-prune")
    def _remove_worker(self) -> None:
        from engine.export import _human, prune_previous

        removed = prune_previous(self.workspace.merged_dir, keep=1)
        freed = _human(sum(size for _, size in removed))
        self.app.call_from_thread(self._removed, f"Removed {len(removed)} older models ({freed}).")

    def _removed(self, text: str) -> None:
        self.query_one("#merge-detail", Static).update(text)
        self._show_check()

    def _checkpoint(self) -> str | None:
        value = self.query_one("#merge-ckpt", Select).value
        return value if isinstance(value, str) else None  # Select.NULL: the last one

    # -- merging -------------------------------------------------------------------------
    @on(Button.Pressed, "#merge-start")
    def _start_pressed(self) -> None:
        self.action_merge()

    @on(Button.Pressed, "#merge-refresh")
    def _refresh_pressed(self) -> None:
        self.action_refresh()

    def action_merge(self) -> None:
        if self._merging:
            return
        record = self._selected_run()
        if record is None:
            self.app.notify("No training run to merge.", severity="warning")
            return
        if self.workspace.merged_dir.exists() and not self._confirm_overwrite:
            self._confirm_overwrite = True
            self.query_one("#merge-detail", Static).update(
                "merged/ exists: the new model replaces it once whole (the old one is kept as "
                "merged.previous): press Merge again to go on."
            )
            return
        self._confirm_overwrite = False
        self._merging = True
        self._states = dict.fromkeys(PHASE_ORDER, "todo")
        self._paint_phases()
        self.query_one("#merge-tail", Static).update("")
        self.set_status("running")
        self._merge_worker(record.id, self._checkpoint())

    @work(thread=True, exclusive=True, exit_on_error=False, group="merge")
    def _merge_worker(self, run_id: str, checkpoint: str | None) -> None:
        from engine.errors import WizardError
        from engine.export import MergeFailed, convert_and_merge

        def progress(phase: str, detail: str) -> None:
            self.post_message(MergeProgress(phase, detail))

        try:
            out = convert_and_merge(
                self.workspace, run=run_id, checkpoint=checkpoint, progress=progress
            )
        except MergeFailed as exc:
            self.post_message(MergeFinished(None, str(exc), exc.tail))
        except WizardError as exc:  # the user's to fix: its one line, here
            self.post_message(MergeFinished(None, str(exc)))
        except Exception as exc:
            # unexpected: the pane says it failed, then the app's one handler shows the line
            # and writes the traceback to .wizard/wizard.log; the wizard goes on
            line = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.post_message(MergeFinished(None, f"{line} (traceback in .wizard/wizard.log)"))
            raise
        else:
            self.post_message(MergeFinished(out))

    def on_merge_progress(self, message: MergeProgress) -> None:
        if message.phase in PHASE_ORDER:
            index = PHASE_ORDER.index(message.phase)
            for i, phase in enumerate(PHASE_ORDER):
                self._states[phase] = (
                    "done" if i < index else ("active" if i == index else self._states[phase])
                )
            self._paint_phases()
        self.query_one("#merge-detail", Static).update(Text(message.detail))

    def on_merge_finished(self, message: MergeFinished) -> None:
        self._merging = False
        if message.out is not None:
            self._states = dict.fromkeys(PHASE_ORDER, "done")
            self._paint_phases()
            self.query_one("#merge-detail", Static).update(
                f"Merged model: {self.workspace.rel(message.out)}/ (loads with transformers). "
                "Next: Chat (6)."
            )
            self.set_status(None)
            self.mark_done()
        else:
            for phase, state in self._states.items():
                if state == "active":
                    self._states[phase] = "failed"
            self._paint_phases()
            self.query_one("#merge-detail", Static).update(
                Text.assemble(("Failed: ", "bold"), str(message.error))
            )
            if message.tail:
                self.query_one("#merge-tail", Static).update(Text("\n".join(message.tail[-10:])))
            self.set_status("failed")
        self._show_check()

    def _paint_phases(self) -> None:
        from engine.export import PHASE_TITLES

        for phase in PHASE_ORDER:
            state = self._states[phase]
            self.query_one(f"#phase-{phase}", Static).update(
                f"{MARKS[state]} {PHASE_TITLES[phase]}"
            )
