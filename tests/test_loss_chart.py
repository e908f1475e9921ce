"""The loss chart appends columns and never rewrites old ones; LiveLines repaints only changes."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from tui.widgets.gpu_panel import GpuPanel, gpu_line, host_line
from tui.widgets.live_lines import LiveLines, changed_span
from tui.widgets.loss_chart import LossChart, column_glyphs, nice_ceiling

# Real losses of a demo run (vis_data/scalars.json of a 40-iteration CPU run).
LOSSES = [
    8.9945, 8.9217, 8.5312, 7.9004, 7.8889, 7.2471, 6.6104, 5.9963, 5.5218, 5.2966,
    4.6135, 3.9983, 3.3064, 2.7021, 2.2049, 1.6552, 1.2587, 0.9102, 0.6553, 0.4986,
    0.4421, 0.3529, 0.3314, 0.2915, 0.2784, 0.2105, 0.1797, 0.1432, 0.1204, 0.1046,
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [(8.99, 10.0), (10.0, 10.0), (1.2, 2.0), (2.2, 2.5), (0.43, 0.5), (3.0, 5.0), (0.0, 1.0)],
)
def test_nice_ceiling(value, expected):
    assert nice_ceiling(value) == pytest.approx(expected)


def test_column_glyphs_fill_from_the_bottom():
    assert column_glyphs([10.0], 10.0, 2) == "██"
    assert column_glyphs([5.0], 10.0, 2) == " █"
    assert column_glyphs([2.5], 10.0, 2) == " ▄"
    assert column_glyphs([0.0001], 10.0, 2) == " ▁"  # a logged point is never invisible
    assert column_glyphs([], 10.0, 2) == "  "


class ChartApp(App):
    def compose(self) -> ComposeResult:
        yield LossChart(id="chart")
        yield LiveLines(["loss 8.9945 · lr 2.00e-03", "CPU 10%"], id="lines")


async def test_chart_only_appends_columns():
    app = ChartApp()
    async with app.run_test(size=(60, 12)) as pilot:
        chart = app.query_one(LossChart)
        chart.set_points([(1, LOSSES[0])], max_iters=30)
        await pilot.pause()
        assert chart.ymax == 10.0
        repaints = chart.repaints
        before = chart.column_text()
        for i, loss in enumerate(LOSSES[1:], start=2):
            chart.set_points([(i, loss)])
            after = chart.column_text()
            # the columns of earlier iterations are exactly as they were
            filled = chart._columns_of(i - 1).stop
            assert [row[:filled] for row in after] == [row[:filled] for row in before]
            before = after
        await pilot.pause()
        assert chart.repaints == repaints, "appending below the axis must not repaint it all"
        assert chart.point_count == len(LOSSES)
        # the whole history again (a re-attach) changes nothing
        chart.set_points(list(enumerate(LOSSES, start=1)))
        assert chart.column_text() == before
        # a loss above the axis rescales once
        chart.set_points([(31, 12.0)], max_iters=30)
        assert chart.ymax == 20.0
        assert chart.repaints == repaints + 1


async def test_chart_keeps_a_fixed_axis_over_max_iters():
    app = ChartApp()
    async with app.run_test(size=(60, 12)) as pilot:
        chart = app.query_one(LossChart)
        chart.set_points([(1, 2.0), (2, 1.0)], max_iters=1000)
        await pilot.pause()
        text = chart.column_text()
        # two points of a 1000-iteration run: only the first column is drawn
        assert all(row[1:].strip() == "" for row in text)
        assert text[-1][0] != " "


def test_changed_span():
    from rich.text import Text

    assert changed_span(Text("iter 48/96"), Text("iter 48/96")) is None
    assert changed_span(Text("iter 48/96"), Text("iter 49/96")) == (6, 7)
    # cells compare by position: "/96" moved one cell right, so it is repainted too
    assert changed_span(Text("iter 9/96"), Text("iter 10/96")) == (5, 10)
    assert changed_span(Text("loss 10.5"), Text("loss 9")) == (5, 9)


async def test_live_lines_mark_only_changed_cells():
    app = ChartApp()
    async with app.run_test(size=(60, 12)) as pilot:
        lines = app.query_one(LiveLines)
        lines.set_lines(["loss 8.9217 · lr 2.00e-03", "CPU 10%"])
        await pilot.pause()
        assert lines.cells_marked == 3  # "945" -> "217"
        lines.set_lines(["loss 8.9217 · lr 2.00e-03", "CPU 10%"])
        assert lines.cells_marked == 3


def test_gpu_lines_say_na_where_unsupported():
    from engine.gpu import GpuSample

    full = GpuSample(0, "NVIDIA H200", 87.0, 40960.0, 143771.0, 62.0, 310.4)
    assert gpu_line(full) == "GPU0 H200           util  87%  mem    40.0/140.4 GB   62°C   310 W"
    bare = GpuSample(1, "NVIDIA H200", None, None, None, None, None)
    assert gpu_line(bare).count("N/A") == 4
    assert host_line(12.0, 3.1, 23.5) == "run CPU  12%   RAM   3.1 of 23.5 GB"


async def test_gpu_panel_hidden_without_gpus():
    class PanelApp(App):
        def compose(self) -> ComposeResult:
            yield GpuPanel()

    app = PanelApp()
    async with app.run_test(size=(80, 10)):
        panel = app.query_one(GpuPanel)
        panel.show([], 5.0, 1.0, 2.0)
        assert panel.gpu_count == 0
        assert panel.lines == ["run CPU   5%   RAM   1.0 of 2.0 GB"]


async def test_chart_takes_a_retrained_iteration_value():
    app = ChartApp()
    async with app.run_test(size=(60, 12)) as pilot:
        chart = app.query_one(LossChart)
        chart.set_points([(1, 8.0), (2, 4.0)], max_iters=4)
        await pilot.pause()
        before = chart.column_text()
        chart.set_points([(1, 8.0), (2, 1.0)])  # iteration 2 trained again after a resume
        assert chart.column_text() != before
        assert chart._points[2] == 1.0
