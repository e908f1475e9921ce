"""The step rail: Environment, Data, Config, Train, Merge, Chat, each with its state."""

from __future__ import annotations

from textual.widgets import OptionList
from textual.widgets.option_list import Option

GLYPHS = {"done": "✔", "running": "●", "failed": "✘", "todo": "·"}


class StepRail(OptionList):
    """A list of the steps; highlighting one opens it."""

    DEFAULT_CSS = """
    StepRail { width: 20; height: 100%; }
    """

    def __init__(
        self,
        steps: list[tuple[str, str]],
        states: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        # Initial states come with the constructor: changing rows after the first paint would
        # cost a second one on a slow link.
        self._steps = steps
        self._states: dict[str, str] = dict(states or {})
        super().__init__(
            *[self._option(i, sid, title) for i, (sid, title) in enumerate(steps)], **kwargs
        )

    def _option(self, index: int, step_id: str, title: str) -> Option:
        glyph = GLYPHS.get(self._states.get(step_id, "todo"), "·")
        return Option(f"{glyph} {index + 1} {title}", id=step_id)

    def set_state(self, step_id: str, state: str) -> None:
        """Redraw one step's line, only when its state really changed."""
        if self._states.get(step_id) == state:
            return
        self._states[step_id] = state
        for i, (sid, title) in enumerate(self._steps):
            if sid == step_id:
                self.replace_option_prompt(step_id, self._option(i, sid, title).prompt)

    def state_of(self, step_id: str) -> str:
        return self._states.get(step_id, "todo")
