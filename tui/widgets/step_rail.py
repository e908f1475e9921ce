"""The step rail: Environment, Data, Config, Train, Merge, Chat, each with its state.

A light widget on purpose: one plain line per step and one highlighted row. An OptionList cost
~140 bytes a row on the wire (a border, padding and a style per segment), repainted itself
whole when it first got its size (just after the first frame) and on every focus change; this
rail draws ~65 bytes a row (with the border beside it), and moving the highlight repaints only
the two rows involved.
"""

from __future__ import annotations

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

GLYPHS = {"done": "✔", "running": "●", "failed": "✘", "todo": "·"}


class StepRail(Widget, can_focus=True):
    """A list of the steps; moving the highlight opens a step, Enter goes into it."""

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("home", "move_to(0)", show=False),
        Binding("end", "move_to(-1)", show=False),
        Binding("enter", "select", "Into the step", show=False),
    ]
    COMPONENT_CLASSES = {"step-rail--highlight", "step-rail--highlight-blurred"}
    DEFAULT_CSS = """
    StepRail { width: 20; height: 100%; }
    StepRail > .step-rail--highlight {
        color: $block-cursor-foreground;
        background: $block-cursor-background;
        text-style: $block-cursor-text-style;
    }
    StepRail > .step-rail--highlight-blurred {
        color: $foreground;
        background: $block-cursor-blurred-background;
    }
    """

    class _StepMessage(Message):
        def __init__(self, rail: StepRail, index: int, step_id: str) -> None:
            super().__init__()
            self.rail = rail
            self.index = index
            self.step_id = step_id

    class Highlighted(_StepMessage):
        """The user moved the highlight to a step (keys or mouse)."""

    class Selected(_StepMessage):
        """Enter (or a click) on a step: go into it."""

    def __init__(
        self,
        steps: list[tuple[str, str]],
        states: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        # Initial states come with the constructor: changing rows after the first paint would
        # cost a second one on a slow link.
        super().__init__(**kwargs)
        self._steps = list(steps)
        self._states: dict[str, str] = dict(states or {})
        self._highlighted = 0

    # -- state -----------------------------------------------------------------------------
    @property
    def highlighted(self) -> int:
        return self._highlighted

    @highlighted.setter
    def highlighted(self, index: int) -> None:
        """Move the highlight (repaints the two rows; posts nothing: the app calls this)."""
        index = max(0, min(len(self._steps) - 1, index))
        if index != self._highlighted:
            old, self._highlighted = self._highlighted, index
            self._refresh_rows(old, index)

    @property
    def highlighted_step(self) -> str:
        return self._steps[self._highlighted][0]

    def set_state(self, step_id: str, state: str) -> None:
        """Redraw one step's line, only when its state really changed."""
        if self._states.get(step_id) == state:
            return
        self._states[step_id] = state
        for i, (sid, _title) in enumerate(self._steps):
            if sid == step_id:
                self._refresh_rows(i)

    def state_of(self, step_id: str) -> str:
        return self._states.get(step_id, "todo")

    def row_text(self, index: int) -> str:
        step_id, title = self._steps[index]
        return f" {GLYPHS.get(self.state_of(step_id), '·')} {index + 1} {title}"

    # -- drawing ---------------------------------------------------------------------------
    def _refresh_rows(self, *rows: int) -> None:
        width = self.size.width
        if width:
            self.refresh(*(Region(0, y, width, 1) for y in rows))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        style = self.rich_style
        if y >= len(self._steps):
            return Strip.blank(width, style)
        if y == self._highlighted:
            component = "step-rail--highlight" if self.has_focus else "step-rail--highlight-blurred"
            style += self.get_component_rich_style(component)
        text = self.row_text(y)[:width].ljust(width)
        return Strip([Segment(text, style)], width)

    def _on_focus(self, event: events.Focus) -> None:
        # As Widget._on_focus, but only the highlighted row changes look, not the whole rail.
        event.prevent_default()
        self.has_focus = True
        self._refresh_rows(self._highlighted)
        if self.parent is not None:
            self.parent.post_message(events.DescendantFocus(self))

    def _on_blur(self, event: events.Blur) -> None:
        event.prevent_default()
        self.has_focus = False
        self._refresh_rows(self._highlighted)
        if self.parent is not None:
            self.parent.post_message(events.DescendantBlur(self))

    # -- input -----------------------------------------------------------------------------
    def _choose(self, index: int) -> None:
        before = self._highlighted
        self.highlighted = index  # clamped there
        if self._highlighted != before:
            self.post_message(self.Highlighted(self, self._highlighted, self.highlighted_step))

    def action_move(self, delta: int) -> None:
        self._choose(self._highlighted + delta)

    def action_move_to(self, index: int) -> None:
        self._choose(index if index >= 0 else len(self._steps) + index)

    def action_select(self) -> None:
        self.post_message(self.Selected(self, self._highlighted, self.highlighted_step))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or not 0 <= offset.y < len(self._steps):
            return
        event.stop()
        self._choose(offset.y)
        self.action_select()
