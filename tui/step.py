"""The base of every step pane: what the app expects of a step, and what a step may ask of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.containers import Vertical
from textual.widget import Widget
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from engine.workspace import Workspace


class StepPane(Vertical):
    """One step of the wizard, shown beside the step rail.

    Subclasses set ``step_id`` (one of engine.workspace.STEPS), ``title``, ``WHAT`` (what the
    step does) and ``NEXT`` (what comes after it), for the help screen; compose their widgets;
    name their main control in ``MAIN`` (a selector: it takes focus when the step opens); and
    may override :meth:`on_step_shown` (called each time the step is opened). Long work goes
    in named workers (``exit_on_error=False``: what they raise goes to the app's one handler);
    threads reach the UI only via post_message or call_from_thread.
    """

    step_id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    WHAT: ClassVar[str] = ""
    NEXT: ClassVar[str] = ""
    MAIN: ClassVar[str] = ""

    DEFAULT_CLASSES = "step-pane"

    def __init__(self) -> None:
        super().__init__(id=self.step_id)
        self._on_mounted: list = []

    def when_mounted(self, callback, *, first: bool = False) -> None:
        """Call ``callback`` once the pane is mounted (its widgets composed): now, or then."""
        if self.is_mounted:
            callback()
        elif first:
            self._on_mounted.insert(0, callback)
        else:
            self._on_mounted.append(callback)

    def _on_mount(self) -> None:
        # Runs after the subclass's on_mount: a step opened for the first time is shown now.
        if self._on_mounted:
            self.call_later(self._mounted)

    def _mounted(self) -> None:
        callbacks, self._on_mounted = self._on_mounted, []
        if self.app.current_step == self.step_id:  # type: ignore[attr-defined]
            self.on_step_shown()
        for callback in callbacks:
            callback()

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace  # type: ignore[attr-defined]

    def on_step_shown(self) -> None:
        """Called when the user opens this step."""

    def main_control(self) -> Widget | None:
        """The widget that takes focus when the step opens (``MAIN``), if it can."""
        if self.MAIN:
            for widget in self.query(self.MAIN):
                shown = all(node.display for node in widget.ancestors_with_self if node is not self)
                if widget.focusable and shown:
                    return widget
        return None

    def focus_main(self) -> bool:
        """Focus the step's main control (else its first field); False when it has none."""
        widget = self.main_control()
        if widget is not None:
            widget.focus()
            return True
        return self.focus_first()

    def focus_first(self) -> bool:
        """Focus the step's first field. Scroll areas are focusable too: one that holds
        fields is skipped for its first field. False when there is none."""
        chain = [w for w in self.screen.focus_chain if self in w.ancestors]
        leaves = [w for w in chain if not any(w in other.ancestors for other in chain)]
        if leaves:
            leaves[0].focus()
            return True
        return False

    def mark_done(self, done: bool = True) -> None:
        self.app.mark_step_done(self.step_id, done)  # type: ignore[attr-defined]

    def set_status(self, status: str | None) -> None:
        """Show a transient state on the rail (e.g. "running", "failed"); None clears it."""
        self.app.set_step_status(self.step_id, status)  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker's messages do not bubble: hand what one raised to the app's handler."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.app.report_error(event.worker.error, f"{self.step_id}: {event.worker.name}")  # type: ignore[attr-defined]
