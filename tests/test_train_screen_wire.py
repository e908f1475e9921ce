"""What a poll repaints on the slow link while a run trains fast (issue 14: <= 300 B/s).

A synthetic run of 2000 iterations at the demo's ~23 iterations a second: each 2-s poll brings
~46 new iterations, new counters, loss and ETA, an evaluation every 16 iterations and a
"Saving checkpoint" log line every 32. The pane is fed these polls directly (no trainer, no
worker thread: every tick is the test's own), and every screen update is rendered to the bytes
a terminal would receive. The bytes themselves, on a real run: benchmarks/wire_bytes.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import waits
from textual._compositor import Compositor

from engine.runs.monitor import EvalSample, RunSnapshot
from engine.runs.records import RunRecord
from engine.workspace import Workspace
from tui.app import WizardApp
from tui.screens import train as train_screen
from tui.screens.train import SLOW_EVERY, TickMessage, TrainPane, TrainTick, visible_log_lines
from tui.widgets.loss_chart import LossChart

sys.path.insert(0, str(Path(__file__).parent))
from test_train_screen import screen_text, steady_host  # noqa: E402, F401

MAX_ITERS = 2000
PER_POLL = 46  # iterations a 2-s poll sees at 23 iterations a second
T0 = time.mktime((2026, 12, 7, 21, 0, 0, 0, 0, -1))
COUNTERS = ("#train-progress", "#train-time", "#train-metrics", "#train-gpus")


def stamp(seconds: float) -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(seconds))


def log_line(seconds: float, message: str, level: str = "INFO") -> str:
    return f"{stamp(seconds)} - mmengine - {level} - {message}"


def fast_run(poll: int, *, state: str = "running") -> TrainTick:
    """The run as the ``poll``-th 2-s poll sees it."""
    it = min(MAX_ITERS, 100 + PER_POLL * poll)
    at = T0 + 60 + 2 * poll  # 60 s of start-up, then 2 s a poll

    def when(i: int) -> float:
        return at - (it - i) / 23

    tail = [log_line(T0 + 30, "Checkpoints will be saved to /ws/work_dirs/run.")]
    for i in range(max(1, it - 150), it + 1):  # the 200-line tail: mostly iteration lines
        tail.append(
            log_line(when(i), f"Iter(train) [{i:4d}/{MAX_ITERS}]  lr: 2.0000e-03  loss: 0.0100")
        )
        if i % 32 == 0:
            tail.append(log_line(when(i), f"Saving checkpoint at {i} iterations"))
        if i % 50 == 0:
            tail.append(
                log_line(
                    when(i), "Reach the end of the dataloader, it will be restarted.", "WARNING"
                )
            )
    evaluated = it - it % 16
    record = RunRecord(
        id="20261207-210000",
        workspace="/ws",
        config="/ws/cpu_copy.py",
        work_dir="/ws/work_dirs/20261207-210000",
        command="xtuner train cpu_copy.py",
        state=state,
        started=T0,
        ended=at if state == "succeeded" else None,
    )
    snap = RunSnapshot(
        version=poll + 1,
        phase="training" if state == "running" else "done",
        iteration=it,
        max_iters=MAX_ITERS,
        losses=[(i, 8.0 / i) for i in range(1, it + 1)],
        lr=2e-3 * (1 - it / MAX_ITERS),
        grad_norm=0.1 + poll / 100,
        iter_time=0.043 + (poll % 3) / 1000,
        eta_seconds=int((MAX_ITERS - it) / 23),
        eval_samples=[EvalSample(evaluated, f"Please introduce yourself\nanswer {evaluated}")],
        log_tail=tail[-200:],
        started_at=stamp(T0 + 50),
        last_log_at=stamp(at),
        state=None if state == "running" else state,
    )
    return TrainTick(record=record, snapshot=snap, host=(190.0, 0.7, 23.5))


def _record_updates(monkeypatch, app) -> list[tuple[list, int]]:
    """(dirty regions, bytes) of every partial screen update: the bytes as the app's driver
    would write them (``render_segments``, what ``App._display`` sends)."""
    updates: list[tuple[list, int]] = []
    partial = Compositor.render_partial_update

    def render_partial(self):
        regions = list(self._dirty_regions)
        update = partial(self)
        if update is not None:
            updates.append((regions, len(update.render_segments(app.console).encode())))
        return update

    monkeypatch.setattr(Compositor, "render_partial_update", render_partial)
    return updates


def _painted(app) -> bool:
    screen = app.screen
    return not (
        screen._layout_required
        or screen._scroll_required
        or screen._repaint_required
        or screen._dirty_widgets
    )


async def _show(pilot, pane: TrainPane, tick: TrainTick, clock: float) -> None:
    """Post one poll's tick and wait until it is handled and painted."""
    train_screen.now = lambda: clock
    want = pane.ticks + 1
    pane.post_message(TickMessage(tick))
    await waits.until(pilot, lambda: pane.ticks == want, "the tick")
    quiet, deadline = 0, time.monotonic() + waits.DEADLINE  # a guard against a hang only
    while quiet < 2:  # painted twice in a row, with the queue flushed between
        assert time.monotonic() < deadline, "the tick was never painted"
        await pilot.pause()
        quiet = quiet + 1 if _painted(pilot.app) else 0


def _quiet_pane(monkeypatch, tmp_path) -> Workspace:
    """A workspace on the Train step whose pane follows nothing by itself: ticks come from
    the test only."""
    monkeypatch.setattr(TrainPane, "_monitor_runs", lambda self, poller, interval: None)
    monkeypatch.setattr(train_screen, "now", train_screen.now)  # restored after the test
    ws = Workspace(tmp_path / "ws").ensure()
    ws.update_state(current_step="train")
    return ws


def _widgets_hit(app, regions) -> set[str]:
    pane = app.query_one(TrainPane)
    hit = set()
    for region in regions:
        for widget in pane.query("*"):
            if widget.id and widget.region.overlaps(region) and widget.parent is pane:
                hit.add(f"#{widget.id}")
    return hit


async def test_slow_link_polls_repaint_the_counters_and_now_and_then_the_rest(
    tmp_path,
    monkeypatch,
    steady_host,  # noqa: F811
):
    ws = _quiet_pane(monkeypatch, tmp_path)
    app = WizardApp(ws.root, low_bandwidth=True)
    updates = _record_updates(monkeypatch, app)
    async with app.run_test(size=(120, 40)) as pilot:
        await waits.settle(pilot)
        pane = app.query_one(TrainPane)
        chart = app.query_one(LossChart)
        await _show(pilot, pane, fast_run(0), T0 + 60)  # a run shown anew: all of it at once
        assert chart.point_count == 100
        per_poll = []
        for poll in range(1, 3 * SLOW_EVERY + 1):
            del updates[:]
            await _show(pilot, pane, fast_run(poll), T0 + 60 + 2 * poll)
            hit = set().union(*(_widgets_hit(app, r) for r, _ in updates)) if updates else set()
            per_poll.append((poll, sorted(hit), sum(n for _, n in updates)))
            slow = poll % SLOW_EVERY == 0
            # every poll: the counters, elapsed and ETA, the loss line
            assert {"#train-progress", "#train-time", "#train-metrics"} <= hit, per_poll
            if slow:  # the chart, the answers and the log follow every SLOW_EVERY-th poll
                assert chart.point_count == 100 + PER_POLL * poll
                assert {"#train-chart", "#train-eval-title", "#train-log"} <= hit, per_poll
            else:  # ... and between, nothing else is repainted
                assert hit <= set(COUNTERS), per_poll
                assert chart.point_count == 100 + PER_POLL * (poll - poll % SLOW_EVERY)
        # Bytes over these 9 polls (18 s), in the test console's 16 colours, measured
        # 2026-12-07: 2,362 with the fix (~175 a counters-only poll, 380-510 a slow one), 8,519
        # before it (~945 every poll: the whole log, the answers' title and the chart each time).
        total = sum(n for *_, n in per_poll)
        assert total <= 3500, per_poll
        text = screen_text(app)
        latest = 100 + PER_POLL * 3 * SLOW_EVERY
        assert f"iter {latest}/{MAX_ITERS}" in text and "ETA" in text
        # the log: each kind of message once, the latest (they update in place)
        assert text.count("Saving checkpoint at") == 1
        assert f"Saving checkpoint at {latest - latest % 32} iterations" in text
        assert "Reach the end of the dataloader" in text

        # the run ends: the last of it is drawn at once, not at the next slow poll
        await _show(pilot, pane, fast_run(42, state="succeeded"), T0 + 200)
        assert chart.point_count == MAX_ITERS
        text = screen_text(app)
        assert "succeeded · run" in text and f"iter {MAX_ITERS}/{MAX_ITERS}" in text
        assert f"answers iter {MAX_ITERS} " in text
        assert "Saving checkpoint at 1984 iterations" in text


async def test_local_polls_draw_everything_every_poll(tmp_path, monkeypatch, steady_host):  # noqa: F811
    """Full colour (a local terminal): no coalescing, and the log as it always was."""
    ws = _quiet_pane(monkeypatch, tmp_path)
    app = WizardApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await waits.settle(pilot)
        pane = app.query_one(TrainPane)
        chart = app.query_one(LossChart)
        for poll in range(4):
            tick = fast_run(poll)
            await _show(pilot, pane, tick, T0 + 60 + 2 * poll)
            assert chart.point_count == len(tick.snapshot.losses)
            text = screen_text(app)
            assert f"answers iter {tick.snapshot.eval_samples[-1].iteration} " in text
            for line in visible_log_lines(tick.snapshot.log_tail):
                assert line in text


def test_repeated_messages_collapse_on_the_slow_link():
    tail = fast_run(5).snapshot.log_tail
    plain = visible_log_lines(tail)
    collapsed = visible_log_lines(tail, 3, collapse_repeats=True)
    assert sum("Saving checkpoint" in line for line in plain) >= 3
    assert [line.split(" ", 2)[2] for line in collapsed] == [
        "Checkpoints will be saved to /ws/work_dirs/run.",
        "Reach the end of the dataloader, it will be restarted.",
        "Saving checkpoint at 320 iterations",
    ]
