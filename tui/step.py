"""The base of every step pane: what the app expects of a step, and what a step may ask of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.containers import Vertical

if TYPE_CHECKING:
    from engine.workspace import Workspace


class StepPane(Vertical):
    """One step of the wizard, shown beside the step rail.

    Subclasses set ``step_id`` (one of engine.workspace.STEPS) and ``title``, compose their
    widgets, and may override :meth:`on_step_shown` (called each time the step is opened).
    Long work goes in named workers; threads reach the UI only via post_message or
    call_from_thread.
    """

    step_id: ClassVar[str] = ""
    title: ClassVar[str] = ""

    DEFAULT_CLASSES = "step-pane"

    def __init__(self) -> None:
        super().__init__(id=self.step_id)

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace  # type: ignore[attr-defined]

    def on_step_shown(self) -> None:
        """Called when the user opens this step."""

    def focus_first(self) -> None:
        """Focus the step's first field (called on Enter from the rail). Scroll areas are
        focusable too: one that holds fields is skipped for its first field."""
        chain = [w for w in self.screen.focus_chain if self in w.ancestors]
        leaves = [w for w in chain if not any(w in other.ancestors for other in chain)]
        if leaves:
            leaves[0].focus()

    def mark_done(self, done: bool = True) -> None:
        self.app.mark_step_done(self.step_id, done)  # type: ignore[attr-defined]

    def set_status(self, status: str | None) -> None:
        """Show a transient state on the rail (e.g. "running", "failed"); None clears it."""
        self.app.set_step_status(self.step_id, status)  # type: ignore[attr-defined]
