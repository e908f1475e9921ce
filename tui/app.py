"""The wizard's application: a step rail beside the open step, a footer of keys."""

from __future__ import annotations

from pathlib import Path

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Static

from engine.workspace import STEPS, Workspace
from tui.screens.chat import ChatPane
from tui.screens.config import ConfigPane
from tui.screens.data import DataPane
from tui.screens.environment import EnvironmentPane
from tui.screens.merge import MergePane
from tui.screens.train import TrainPane
from tui.step import StepPane
from tui.widgets.keys_footer import KeysFooter
from tui.widgets.step_rail import StepRail

PANES: tuple[type[StepPane], ...] = (
    EnvironmentPane,
    DataPane,
    ConfigPane,
    TrainPane,
    MergePane,
    ChatPane,
)
assert tuple(p.step_id for p in PANES) == STEPS

HELP = """\
Keys
  1-6        open a step            ] / [   next / previous step
  enter      into the step          escape  back to the step rail
  tab        next field
  ctrl+p     command palette        ?       this help
  q          quit (training goes on in the background)
"""


class OnePaintScreen(Screen):
    """The default screen, minus the redundant repaints of start-up (~13 KB each on the wire).

    On its first resume Textual lays the screen out at the terminal's size, which paints it
    whole, then calls ``refresh()``, which paints it whole again; then the driver's first Resize
    event (to the same size) lays it out once more. Both repeats are skipped.
    """

    _resumed_once = False

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        first, self._resumed_once = not self._resumed_once, True
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


class WizardApp(App):
    """xtuner-wizard: environment -> data -> config -> train -> merge -> chat."""

    CSS_PATH = "app.tcss"
    AUTO_FOCUS = "#rail"
    TITLE = "xtuner-wizard"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("right_square_bracket", "step(1)", "Next step"),
        Binding("left_square_bracket", "step(-1)", "Prev step"),
        Binding("escape", "focus_rail", "Rail", show=False),
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

    def get_default_screen(self) -> Screen:
        return OnePaintScreen(id="_default")

    def compose(self) -> ComposeResult:
        # The folder's name only: the full path is on the Environment step (and snapshots stay stable).
        yield Static(f"xtuner-wizard  ·  workspace: {self.workspace.root.name}", id="title-bar")
        with Horizontal(id="body"):
            yield StepRail(
                [(p.step_id, p.title) for p in PANES], states=self._rail_states(), id="rail"
            )
            # open on the saved step: showing another first costs a second full paint
            with ContentSwitcher(id="steps", initial=self._current):
                for pane_cls in PANES:
                    yield pane_cls()
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
        return self.query_one(f"#{step}", StepPane)

    def open_step(self, step: str, *, save: bool = True) -> None:
        if step not in STEPS:
            return
        changed = self._current != step
        self._current = step
        self.query_one("#steps", ContentSwitcher).current = step
        rail = self.query_one(StepRail)
        index = STEPS.index(step)
        if rail.highlighted != index:
            rail.highlighted = index
        if save:
            self.workspace.update_state(current_step=step)
        if changed or not save:
            self.pane(step).on_step_shown()

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
        """Enter on the rail moves into the step, so its own keys work."""
        self.pane(self.current_step).focus_first()

    def action_open_step(self, step: str) -> None:
        self.open_step(step)

    def action_step(self, delta: int) -> None:
        index = (STEPS.index(self.current_step) + delta) % len(STEPS)
        self.open_step(STEPS[index])

    def action_focus_rail(self) -> None:
        self.query_one(StepRail).focus()

    def action_help(self) -> None:
        self.notify(HELP, title="Help", timeout=10)
