"""A loss chart whose old columns never change: cheap to keep on screen over a slow SSH link.

A sliding chart (Textual's Sparkline over the last N points) shifts every bar left on every
update, so every cell is re-sent: ~9 KB/s measured (docs/notes/textual-on-slow-links.md).
This chart fixes its x-axis to the whole run (``max_iters``): column ``c`` always holds the same
iterations, points only append, and a new point repaints only the cells of its column whose
glyph changed. The y-axis grows only when a loss goes above it (rare: loss falls), which repaints
the chart once.

Why slices: Textual's partial update sends a dirty line from the *left edge of the widget* to the
end of the dirty span (``ChopsUpdate.render_segments`` crops only on the right). One wide widget
would re-send every column left of the new one. The plot is therefore cut into narrow slices
(``SLICE`` columns each, one widget each), so a new point costs at most ``SLICE`` cells per
changed row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from rich.segment import Segment
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
GUTTER = 7  # y-axis labels: "  10.0┤"
SLICE = 16  # plot columns per slice widget
MAX_SLICES = 20  # made once, in compose: up to 320 plot columns (the rest is clipped)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= value."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        top = step * 10.0**exp
        if top >= value * (1 - 1e-9):
            return top
    return 10.0 ** (exp + 1)


def format_axis(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def column_glyphs(values: list[float], ymax: float, rows: int) -> str:
    """The column's glyphs, top to bottom, for the mean of its values on a 0..ymax axis."""
    if not values or rows <= 0 or ymax <= 0:
        return " " * max(0, rows)
    mean = sum(values) / len(values)
    eighths = round(max(0.0, min(1.0, mean / ymax)) * rows * 8)
    eighths = max(1, eighths)  # a logged point is never invisible
    return "".join(BLOCKS[max(0, min(8, eighths - (rows - 1 - r) * 8))] for r in range(rows))


class _Slice(Widget):
    """SLICE columns of the plot; draws from the chart's glyphs."""

    DEFAULT_CSS = """
    _Slice { width: 16; height: 1fr; }
    """

    def __init__(self, chart: LossChart, first: int) -> None:
        super().__init__()
        self.chart = chart
        self.first = first

    def render_line(self, y: int) -> Strip:
        chart = self.chart
        chart.ensure_layout()
        style = self.rich_style + chart.get_component_rich_style("loss-chart--bar", partial=True)
        cols = chart._glyphs[self.first : self.first + SLICE]
        text = "".join(c[y] for c in cols) if y < chart._plot_rows else ""
        return Strip([Segment(text.ljust(self.size.width), style)]).crop(0, self.size.width)


class _Gutter(Widget):
    """The y labels (repainted on rescale only)."""

    DEFAULT_CSS = """
    _Gutter { width: 7; height: 1fr; }
    """

    def __init__(self, chart: LossChart) -> None:
        super().__init__()
        self.chart = chart

    def render_line(self, y: int) -> Strip:
        chart = self.chart
        chart.ensure_layout()
        style = self.rich_style + chart.get_component_rich_style("loss-chart--axis", partial=True)
        rows, ymax = chart._plot_rows, chart._ymax
        label = ""
        if ymax and y == 0:
            label = format_axis(ymax)
        elif y == rows - 1:
            label = "0"
        elif ymax and rows >= 4 and rows % 2 == 0 and y == rows // 2:
            label = format_axis(ymax / 2)
        text = f"{label:>{GUTTER - 1}}┤" if label else " " * (GUTTER - 1) + "│"
        return Strip([Segment(text, style)])


class _XAxis(Widget):
    """The x-axis line (repainted when max_iters or the width changes)."""

    DEFAULT_CSS = """
    _XAxis { width: 1fr; height: 1; }
    """

    def __init__(self, chart: LossChart) -> None:
        super().__init__()
        self.chart = chart

    def render_line(self, y: int) -> Strip:
        self.chart.ensure_layout()
        width = self.size.width
        style = self.rich_style + self.chart.get_component_rich_style(
            "loss-chart--axis", partial=True
        )
        return Strip([Segment(self.chart._x_axis(width).ljust(width)[:width], style)])


class _Plot(Horizontal):
    DEFAULT_CSS = """
    _Plot { height: 1fr; width: 1fr; overflow: hidden hidden; }
    """


class LossChart(Widget):
    """Loss per iteration over a fixed x-axis ``1..max_iters``.

    Feed it with :meth:`set_points` (the whole history or just what is new; points it already
    holds are ignored). Only the cells whose glyphs changed are repainted.
    """

    DEFAULT_CSS = """
    LossChart {
        height: 8;
        width: 1fr;
        layout: vertical;
    }
    LossChart > .loss-chart--bar { color: $accent; }
    LossChart > .loss-chart--axis { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"loss-chart--bar", "loss-chart--axis"}

    def __init__(self, max_iters: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self._max_iters = max(0, int(max_iters))
        self._points: dict[int, float] = {}
        self._ymax = 0.0
        self._columns: list[list[float]] = []  # losses per column
        self._glyphs: list[str] = []  # per column, plot_rows chars top to bottom
        self._plot_width = 0
        self._plot_rows = 0
        self._per = 1  # plot columns per iteration (short runs)
        self._slices: list[_Slice] = []
        self._laid_out_for: Size | None = None
        self.repaints = 0  # full repaints (tests read it)

    def compose(self) -> ComposeResult:
        # The slices are made here, once: mounting widgets later would re-layout (and repaint)
        # the chart; slices past the right edge are clipped and cost nothing.
        self._slices = [_Slice(self, n * SLICE) for n in range(MAX_SLICES)]
        with _Plot():
            yield _Gutter(self)
            yield from self._slices
        yield _XAxis(self)

    # -- data ------------------------------------------------------------------------------
    @property
    def max_iters(self) -> int:
        return self._max_iters

    @property
    def ymax(self) -> float:
        return self._ymax

    @property
    def point_count(self) -> int:
        return len(self._points)

    def column_text(self) -> list[str]:
        """The plot as text rows, top to bottom (for tests)."""
        return ["".join(c[r] for c in self._glyphs) for r in range(self._plot_rows)]

    def reset(self, max_iters: int) -> None:
        """A new run: clear and redraw once."""
        self._max_iters = max(0, int(max_iters))
        self._points.clear()
        self._ymax = 0.0
        self._relayout()

    def set_points(self, points: Iterable[tuple[int, float]], max_iters: int | None = None) -> None:
        """Add logged (iteration, loss) points; the ones already held are skipped."""
        if max_iters and max_iters != self._max_iters:
            self._max_iters = int(max_iters)
            self._absorb(points)
            self._relayout()
            return
        new = self._absorb(points)
        if not new:
            return
        if self._max_iters <= 0 or max(i for i, _ in new) > self._max_iters:
            self._max_iters = max(self._max_iters, max(self._points))
            self._relayout()
            return
        if max(v for _, v in new) > self._ymax:
            self._relayout()
            return
        if not self._plot_width:
            return
        changed: set[int] = set()
        for i, v in new:
            for col in self._columns_of(i):
                self._columns[col].append(v)
                changed.add(col)
        for col in sorted(changed):
            old = self._glyphs[col]
            glyphs = column_glyphs(self._columns[col], self._ymax, self._plot_rows)
            if glyphs == old:
                continue
            self._glyphs[col] = glyphs
            rows = [r for r in range(self._plot_rows) if old[r] != glyphs[r]]
            piece = self._slices[col // SLICE]
            x = col % SLICE
            piece.refresh(Region(x, rows[0], 1, rows[-1] - rows[0] + 1))

    def _absorb(self, points: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
        new = []
        replaced = False
        for i, v in points:
            i, v = int(i), float(v)
            if not math.isfinite(v):
                continue
            old = self._points.get(i)
            if old is None:
                self._points[i] = v
                new.append((i, v))
            elif old != v:  # trained again after a resume: the new value wins
                self._points[i] = v
                replaced = True
        if replaced:
            self._relayout()
            return []
        return new

    # -- geometry ----------------------------------------------------------------------------
    def _columns_of(self, iteration: int) -> range:
        """The plot columns of an iteration: one shared column per several iterations on a
        long run, or several columns per iteration when the run is shorter than the plot."""
        width = self._plot_width
        if self._max_iters <= 0 or width <= 0:
            return range(0)
        if self._per > 1:
            first = min(width - 1, max(0, (iteration - 1) * self._per))
            return range(first, min(width, first + self._per))
        col = min(width - 1, max(0, (iteration - 1) * width // self._max_iters))
        return range(col, col + 1)

    def _relayout(self) -> None:
        """Recompute every column for the current size and scale, then repaint it all."""
        width = max(0, self.size.width - GUTTER)
        rows = max(0, self.size.height - 1)
        self._per = max(1, width // self._max_iters) if self._max_iters else 1
        self._plot_width = min(width, self._max_iters * self._per) if self._max_iters else width
        self._plot_width = min(self._plot_width, MAX_SLICES * SLICE)
        self._plot_rows = rows
        top = max(self._points.values(), default=0.0)
        self._ymax = nice_ceiling(top) if top > 0 else 0.0
        self._columns = [[] for _ in range(self._plot_width)]
        if self._plot_width:
            for i in sorted(self._points):
                for col in self._columns_of(i):
                    self._columns[col].append(self._points[i])
        self._glyphs = [column_glyphs(c, self._ymax, rows) for c in self._columns]
        self.repaints += 1
        self.refresh()
        for piece in self._slices:
            piece.refresh()
        for part in (*self.query(_Gutter), *self.query(_XAxis)):
            part.refresh()

    def ensure_layout(self) -> None:
        """Lay the columns out for the chart's size, if that changed since the last time.

        The parts call this before drawing, so the first frame already holds the history: the
        chart gets its size in the layout that precedes the frame, but its Resize event only
        after the frame, and laying out then repaints the whole chart a second time.
        """
        if self._laid_out_for != self.size:
            self._laid_out_for = self.size
            self._relayout()

    def on_resize(self) -> None:
        self.ensure_layout()

    def _x_axis(self, width: int) -> str:
        if not self._max_iters:
            return " " * (GUTTER - 1) + "└ iteration"
        right = f"{self._max_iters}"
        plot = self._plot_width
        line = " " * (GUTTER - 1) + "└1" + " " * max(0, plot - 1 - len(right) - 1) + right
        if len(line) + 5 <= width:
            line += " iter"
        return line
