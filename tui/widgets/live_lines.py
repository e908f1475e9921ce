"""Lines of text that repaint only the characters that changed.

A Static repaints its whole region on every update. Over a slow link each repainted cell costs
bytes, so the Train pane's live values go through this widget: it keeps the lines it shows and,
on :meth:`set_lines`, marks dirty only the span of each changed line between its first and last
changed character. (Textual then sends the line from the widget's left edge to the end of that
span: put what changes most at the left, and keep such widgets narrow.)
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

Line = str | Text


def _as_text(line: Line) -> Text:
    return line if isinstance(line, Text) else Text(line)


def changed_span(old: Text, new: Text) -> tuple[int, int] | None:
    """The [start, end) cell span that differs between two lines, None when equal."""
    if old.plain == new.plain and old.spans == new.spans and old.style == new.style:
        return None
    if old.spans != new.spans or old.style != new.style:
        return 0, max(old.cell_len, new.cell_len)
    a, b = old.plain, new.plain
    if len(a) != old.cell_len or len(b) != new.cell_len:  # wide characters: keep it simple
        return 0, max(old.cell_len, new.cell_len)
    width = max(len(a), len(b))
    a, b = a.ljust(width), b.ljust(width)  # cells compare by position, not as strings
    start = 0
    while start < width and a[start] == b[start]:
        start += 1
    end = width
    while end > start and a[end - 1] == b[end - 1]:
        end -= 1
    return start, end


class LiveLines(Widget):
    """A fixed block of lines; changing one repaints only its changed characters."""

    DEFAULT_CSS = """
    LiveLines {
        height: auto;
        width: 1fr;
    }
    """

    def __init__(self, lines: Sequence[Line] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self._lines: list[Text] = [_as_text(line) for line in lines]
        self.cells_marked = 0  # cells marked dirty since creation (benchmarks read it)

    @property
    def lines(self) -> list[str]:
        return [t.plain for t in self._lines]

    def set_lines(self, lines: Sequence[Line]) -> None:
        new = [_as_text(line) for line in lines]
        if len(new) != len(self._lines):
            self._lines = new
            self.refresh(layout=True)
            return
        for y, (old, line) in enumerate(zip(self._lines, new, strict=True)):
            span = changed_span(old, line)
            if span is None:
                continue
            self._lines[y] = line
            start, end = span
            self.cells_marked += end - start
            self.refresh(Region(start, y, max(1, end - start), 1))

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines)

    def get_content_width(self, container, viewport) -> int:
        return max((t.cell_len for t in self._lines), default=0)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y >= len(self._lines):
            return Strip.blank(width, base)
        text = self._lines[y]
        if text.cell_len > width > 0:  # cut with an ellipsis, never mid-word without a mark
            text = text.copy()
            text.truncate(width, overflow="ellipsis")
        segments = list(text.render(self.app.console))
        strip = Strip(segments).apply_style(base)
        pad = width - strip.cell_length
        if pad > 0:
            strip = Strip([*strip, Segment(" " * pad, self.pad_style(base))])
        return strip.crop(0, width)

    def pad_style(self, base: Style) -> Style:
        """The style of the blank cells right of a line: the widget's own (a subclass may pad
        with the background alone, as a Static does)."""
        return base
