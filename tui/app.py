"""The wizard's application: a step rail beside the open step, a footer of keys."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.keys import key_to_character
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Static
from textual.worker import Worker, WorkerState

from engine.workspace import STEPS, Workspace
from tui.step import StepPane
from tui.widgets.help import HelpScreen
from tui.widgets.keys_footer import KeysFooter
from tui.widgets.step_rail import StepRail

# Each step's pane, imported when the step is first opened (a screen's module and the engine
# modules it needs cost start-up time; only the open step's are on the first paint's path).
PANE_CLASSES: dict[str, tuple[str, str, str]] = {
    "environment": ("tui.screens.environment", "EnvironmentPane", "Environment"),
    "data": ("tui.screens.data", "DataPane", "Data"),
    "config": ("tui.screens.config", "ConfigPane", "Config"),
    "train": ("tui.screens.train", "TrainPane", "Train"),
    "merge": ("tui.screens.merge", "MergePane", "Merge"),
    "chat": ("tui.screens.chat", "ChatPane", "Chat"),
}
assert tuple(PANE_CLASSES) == STEPS


def pane_class(step: str) -> type[StepPane]:
    import importlib

    module, name, _title = PANE_CLASSES[step]
    cls = getattr(importlib.import_module(module), name)
    assert cls.step_id == step and cls.title == PANE_CLASSES[step][2]
    return cls


# Inside a field, q ? ] [ are typed: esc leaves it, and the footer says so.
IN_FIELD = Binding("escape", "focus_rail", "then q ? ] [")


def error_line(exc: BaseException) -> str:
    """One line for the screen: a WizardError's message and fix, else the type and message."""
    from engine.errors import WizardError

    if isinstance(exc, WizardError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class OnePaintScreen(Screen):
    """The default screen, minus the redundant repaints of start-up (~13 KB each on the wire).

    On its first resume Textual lays the screen out at the terminal's size, which paints it
    whole, then calls ``refresh()``, which paints it whole again; then the driver's first Resize
    event (to the same size) lays it out once more. Both repeats are skipped.
    """

    _resumed_once = False

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        first, self._resumed_once = not self._resumed_once, True
        if first:
            self.apply_breakpoints(self.app.size)
        if not first or self._size == self.app.size:
            return  # Textual's own handler runs as usual
        event.prevent_default()
        self.refresh = lambda *args, **kwargs: self  # type: ignore[method-assign]
        try:
            Screen._on_screen_resume(self, event)
        finally:
            del self.refresh

    def _compositor_refresh(self) -> None:
        compositor = self._compositor
        full = self.is_current and compositor.size.region in compositor._dirty_regions
        super()._compositor_refresh()
        if full:
            # A full paint drew every visible widget as it is now. The repaint regions they
            # marked while being laid out for it (each widget refreshes when it gets its size)
            # would otherwise be sent again on the next update: a second whole screen.
            for widget in compositor.visible_widgets:
                widget._exchange_repaint_regions()

    def _screen_resized(self, size) -> None:
        if size == self._size:
            return  # already laid out at this size
        super()._screen_resized(size)

    def apply_breakpoints(self, size) -> None:
        """The app's breakpoint classes for ``size``, set before the first layout (Textual
        sets them on a Resize event only: after the first paint, which would then be redone)."""
        app = self.app
        horizontal, vertical = app.HORIZONTAL_BREAKPOINTS or [], app.VERTICAL_BREAKPOINTS or []
        classes = {name: False for _, name in horizontal + vertical}
        for name in self._get_breakpoint_classes(size.width, horizontal):
            classes[name] = True
        for name in self._get_breakpoint_classes(size.height, vertical):
            classes[name] = True
        self.update_classes(classes, animate=False)

    @property
    def _binding_chain(self):
        """Textual's chain, plus the open step's keys when focus is outside it (on the rail),
        and inside a field an esc key that says where q ? ] [ went."""
        chain = Screen._binding_chain.fget(self)
        pane = getattr(self.app, "shown_pane", lambda: None)()
        focused = self.focused
        if pane is not None and all(node is not pane for node, _ in chain):
            bindings = pane._bindings.copy()
            if focused is not None:
                for key in list(bindings.key_to_bindings):
                    if focused.check_consume_key(key, key_to_character(key)):
                        del bindings.key_to_bindings[key]
            at = next(i for i, (node, _) in enumerate(chain) if node is self)
            chain.insert(at, (pane, bindings))
        if focused is not None and focused.check_consume_key("q", "q"):
            app_node, app_bindings = chain[-1]
            if app_node is self.app and "escape" in app_bindings.key_to_bindings:
                app_bindings.key_to_bindings["escape"] = [IN_FIELD]
        return chain


class WizardApp(App):
    """xtuner-wizard: environment -> data -> config -> train -> merge -> chat."""

    CSS_PATH = "app.tcss"
    # 80x24 first; from 110 columns panes may put two panels side by side, from 34 rows
    # they may give charts and logs more lines (classes on the screen).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    AUTO_FOCUS = "#rail"
    TITLE = "xtuner-wizard"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False),
        Binding("right_square_bracket", "step(1)", "Next"),
        Binding("left_square_bracket", "step(-1)", "Prev"),
        Binding("escape", "focus_rail", "Steps", show=False),
        *[Binding(str(i + 1), f"open_step('{sid}')", show=False) for i, sid in enumerate(STEPS)],
    ]

    def __init__(
        self,
        workspace: str | Path = ".",
        *,
        model: str | None = None,
        low_bandwidth: bool = False,
    ) -> None:
        super().__init__()
        self.workspace = Workspace(workspace).ensure()
        self.low_bandwidth = low_bandwidth
        if low_bandwidth:
            self.animation_level = "none"
        if model:
            self.workspace.set_choice("model", model)
        self._statuses: dict[str, str | None] = {}
        self._current = self.workspace.load_state().current_step
        self._quit_warned = False
        self._panes: dict[str, StepPane] = {}
        self.training_goes_on: str | None = None  # the run that trains on after exit

    def get_default_screen(self) -> Screen:
        screen = OnePaintScreen(id="_default")
        screen.apply_breakpoints(self.size)  # before the panes mount: they read the classes
        return screen

    def compose(self) -> ComposeResult:
        # The folder's name only: the full path is on the Environment step (and snapshots stay stable).
        yield Static(f"xtuner-wizard  ·  workspace: {self.workspace.root.name}", id="title-bar")
        with Horizontal(id="body"):
            yield StepRail(
                [(step, title) for step, (_m, _c, title) in PANE_CLASSES.items()],
                states=self._rail_states(),
                id="rail",
            )
            # open on the saved step: showing another first costs a second full paint; the
            # other steps are composed when first opened (start-up composes one pane, not six)
            with ContentSwitcher(id="steps", initial=self._current):
                yield self.pane(self._current)
        yield KeysFooter()

    def _rail_states(self) -> dict[str, str]:
        from engine.runs.launch import active_runs

        if active_runs(self.workspace):  # cheap: run records are small JSON files
            self._statuses["train"] = "running"
        done = self.workspace.load_state().done
        return {s: self._statuses.get(s) or ("done" if s in done else "todo") for s in STEPS}

    def on_mount(self) -> None:
        rail = self.query_one(StepRail)
        rail.highlighted = STEPS.index(self._current)
        self.pane(self._current).on_step_shown()

    # -- steps -------------------------------------------------------------------------
    @property
    def current_step(self) -> str:
        return self._current

    def pane(self, step: str) -> StepPane:
        """The step's pane (made, and later mounted, when the step is first opened)."""
        if step not in self._panes:
            self._panes[step] = pane_class(step)()
        return self._panes[step]

    def shown_pane(self) -> StepPane | None:
        """The open step's pane (also while the first frame is composed); None before."""
        return self._panes.get(self._current)

    def open_step(self, step: str, *, save: bool = True, focus: bool = False) -> None:
        """Show ``step``; ``focus`` moves into its main control (keys, the palette), while
        the rail's own moves leave focus on the rail (the step's keys work from there too)."""
        if step not in STEPS:
            return
        changed = self._current != step
        self._current = step
        pane = self.pane(step)
        switcher = self.query_one("#steps", ContentSwitcher)
        first_time = pane.parent is None
        if save:
            self.workspace.update_state(current_step=step)
        if first_time:
            switcher.mount(pane)  # composed now; it calls on_step_shown once mounted
        switcher.current = step
        rail = self.query_one(StepRail)
        index = STEPS.index(step)
        if rail.highlighted != index:
            rail.highlighted = index
        if changed:
            self.refresh_bindings()  # the footer shows the open step's keys

        def shown() -> None:
            if (changed or not save) and not first_time:
                pane.on_step_shown()
            if focus and not pane.focus_main():
                rail.focus()  # never leave focus (and its keys) in a step that is hidden now

        if first_time:
            pane.when_mounted(shown, first=True)
        else:
            shown()

    def mark_step_done(self, step: str, done: bool = True) -> None:
        state = self.workspace.mark_done(step, done)
        self._refresh_rail(step, state.done)

    def set_step_status(self, step: str, status: str | None) -> None:
        self._statuses[step] = status
        self._refresh_rail(step, self.workspace.load_state().done)

    def _refresh_rail(self, step: str, done: list[str]) -> None:
        status = self._statuses.get(step) or ("done" if step in done else "todo")
        self.query_one(StepRail).set_state(step, status)

    # -- events and actions ------------------------------------------------------------
    def on_step_rail_highlighted(self, event: StepRail.Highlighted) -> None:
        if event.index == event.rail.highlighted:  # else stale: a later move is queued
            self.open_step(event.step_id)

    def on_step_rail_selected(self, event: StepRail.Selected) -> None:
        """Enter on the rail moves into the step's main control."""
        self.pane(self.current_step).focus_main()

    def action_open_step(self, step: str) -> None:
        self.open_step(step, focus=True)

    def action_step(self, delta: int) -> None:
        index = (STEPS.index(self.current_step) + delta) % len(STEPS)
        self.open_step(STEPS[index], focus=True)

    def action_focus_rail(self) -> None:
        self.query_one(StepRail).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.pane(self.current_step), STEPS))

    async def action_quit(self) -> None:
        """Quit; a run that trains goes on, and the wizard says so once before it quits."""
        from engine.runs.launch import active_runs

        try:
            runs = active_runs(self.workspace)
        except Exception:  # noqa: BLE001 - a record being rewritten: quit anyway
            runs = []
        if runs and not self._quit_warned:
            self._quit_warned = True
            run = runs[-1].id
            self.notify(
                f"Run {run} goes on training after the wizard quits: follow it with "
                f"`xtuner-wizard attach {run}`. Press q again to quit.",
                title="Training goes on",
                timeout=15,
            )
            return
        self.training_goes_on = runs[-1].id if runs else None
        self.exit()

    # -- the command palette -----------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for number, step in enumerate(STEPS, 1):
            pane_cls = pane_class(step)
            yield SystemCommand(
                f"Open step {number}: {pane_cls.title}",
                pane_cls.WHAT.split(".")[0],
                lambda step=pane_cls.step_id: self.open_step(step, focus=True),
            )
        for title, help_text, step, action in ACTIONS:
            yield SystemCommand(
                title, help_text, lambda s=step, a=action: self.run_step_action(s, a)
            )
        yield SystemCommand("Help", "The keys and purpose of the open step", self.action_help)
        yield from super().get_system_commands(screen)

    def run_step_action(self, step: str, action: str) -> None:
        """Open ``step`` and run one of its actions (the palette's commands)."""
        self.open_step(step, focus=True)
        pane = self.pane(step)
        pane.when_mounted(lambda: self.call_later(self.run_action, action, pane))

    # -- errors from workers -----------------------------------------------------------
    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report_error(event.worker.error, event.worker.name)

    def report_error(self, exc: BaseException, where: str = "") -> None:
        """One handler for what a worker raised: one line on the screen, the traceback in
        ``.wizard/wizard.log``; the wizard goes on."""
        log = self.workspace.wizard_dir / "wizard.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a", encoding="utf-8") as out:
                out.write(f"--- {datetime.now().isoformat(timespec='seconds')} {where}\n")
                out.write("".join(traceback.format_exception(exc)))
        except OSError:
            pass  # a read-only workspace: the line on the screen still says what happened
        text = f"{error_line(exc)}\n(traceback in {self.workspace.rel(log)})"
        if any(n.message == text for n in self._notifications):
            return  # the same error is on the screen already (a render retried, say)
        self.notify(text, title="Error", severity="error", timeout=12)


# (title, help, step, the pane's action) offered by the command palette
ACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("Write the dataset", "Data: write the identity dataset (ctrl+s)", "data", "write"),
    ("Validate the dataset", "Data: list the problems of the file (ctrl+o)", "data", "validate"),
    ("Write the config", "Config: write <base>_copy.py (ctrl+s)", "config", "write"),
    ("Start training", "Train: start a run of the config (s)", "train", "start"),
    ("Stop training", "Train: stop the running run (x)", "train", "stop"),
    ("Resume training", "Train: resume from the last checkpoint (r)", "train", "resume"),
    ("Merge", "Merge: the run's adapter into the base model (m)", "merge", "merge"),
    ("Ask the tuned model", "Chat: type a question (Enter sends)", "chat", "ask"),
)
