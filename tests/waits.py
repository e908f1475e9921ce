"""Waiting in UI tests on events, never on time (docs/testing.md, "Events, not clocks").

A step pane's work is debounced (a one-shot timer on the pane) and done in workers; a test
that acts on a pane's result waits until neither is pending, however slow the machine is.
The deadline is only a guard against a hang: on time, the waits end on what they wait for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from textual.worker import WorkerState

DEADLINE = 300.0  # generous for a loaded 2-core machine: the waits end on events
# Workers that follow a run until cancelled: they never finish on their own.
FOLLOWERS = ("train-monitor",)


async def until(pilot, predicate: Callable[[], object], what: str, timeout: float = DEADLINE):
    """Let the app run until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def pending_work(app, ignore: Iterable[str] = FOLLOWERS) -> list[str]:
    """What the app still has to do: running workers, and the panes' debounce timers."""
    from tui.step import StepPane

    ignored = set(ignore)
    busy = [
        f"worker {w.group}/{w.name}"
        for w in app.workers
        if w.state in (WorkerState.PENDING, WorkerState.RUNNING) and w.group not in ignored
    ]
    for pane in app.query(StepPane):
        for timer in list(pane._timers):  # Textual keeps a pane's timers here
            task = timer._task
            if timer._repeat == 0 and task is not None and not task.done():
                busy.append(f"timer on {pane.step_id}")
    return busy


async def settle(pilot, timeout: float = DEADLINE, ignore: Iterable[str] = FOLLOWERS) -> None:
    """Until no pane has debounced or worker work pending, twice in a row (a finished
    worker's result may schedule more), with the message queue flushed in between."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        await pilot.pause()
        if pending_work(pilot.app, ignore):
            quiet = 0
            if time.monotonic() > deadline:
                raise AssertionError(f"never settled: {pending_work(pilot.app, ignore)}")
            await pilot.pause(0.02)
        else:
            quiet += 1
