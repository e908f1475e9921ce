"""The one loop that follows a run: the Train pane, `attach` and run-all all read runs this way.

:class:`RunFollower` pairs the run's record (refreshed against what is alive every
``refresh_every`` seconds, and at once when the run ends) with its monitor's snapshot, and hands
out evaluation answers once each is complete (another record follows it, or the run ended).
:class:`ShownRunFollower` is the same for a screen that shows "the run" of a workspace: a run by
id, else the active one, else the latest, looking again while none is active (a run started
from the command line meanwhile is picked up).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.runs.monitor import EvalSample, RunMonitor, RunSnapshot
from engine.runs.records import RunRecord

REFRESH_EVERY_S = 2.0  # a refresh scans /proc: not on every poll
LOOK_EVERY_S = 5.0  # while no run is active: how often to look for a newly started one


@dataclass
class FollowUpdate:
    record: RunRecord
    snapshot: RunSnapshot
    new_samples: list[EvalSample] = field(default_factory=list)  # complete, not handed out yet

    @property
    def ended(self) -> bool:
        return not self.record.active


class RunFollower:
    """``fresh``: the record was just refreshed (the first poll does not refresh it again)."""

    def __init__(
        self, record: RunRecord, *, refresh_every: float = REFRESH_EVERY_S, fresh: bool = False
    ):
        self.record = record
        self.monitor = RunMonitor.for_record(record)
        self.refresh_every = refresh_every
        self._last_refresh = time.monotonic() if fresh else float("-inf")
        self._handed_out = 0
        self._last_version = -1
        self._ended_reported = False

    def poll(self) -> FollowUpdate | None:
        """What changed since the last poll; None when nothing did."""
        from engine.runs.control import refresh

        now = time.monotonic()
        if now - self._last_refresh >= self.refresh_every:
            self.record = refresh(self.record)
            self._last_refresh = now
        snap = self.monitor.poll()
        if snap.phase in ("done", "failed", "stopped") and self.record.active:
            self.record = refresh(self.record)  # the files say it ended: the record too
            snap = self.monitor.poll()
        ended = not self.record.active
        if snap.version == self._last_version and not (ended and not self._ended_reported):
            return None
        self._last_version = snap.version
        self._ended_reported = ended
        complete = len(snap.eval_samples) - (0 if ended or snap.phase != "evaluating" else 1)
        new = snap.eval_samples[self._handed_out : complete]
        self._handed_out = max(self._handed_out, complete)
        return FollowUpdate(self.record, snap, list(new))

    @property
    def snapshot(self) -> RunSnapshot:
        """The latest snapshot (as of the last poll)."""
        return self.monitor.snapshot

    def updates(self, interval: float = 0.5) -> Iterator[FollowUpdate]:
        """Every change until the run ends (the last update has ``ended``)."""
        while True:
            update = self.poll()
            if update is not None:
                yield update
                if update.ended:
                    return
            time.sleep(interval)


def run_to_show(ws, run_id: str | None = None) -> RunRecord | None:
    """``run_id``'s run, else the active run, else the latest (each refreshed); None when the
    workspace has none (or ``run_id`` is unknown)."""
    from engine.errors import WizardError
    from engine.runs.control import refresh
    from engine.runs.records import get_run, list_runs

    try:
        if run_id:
            return refresh(get_run(ws, run_id))
        runs = [refresh(r) for r in list_runs(ws)]
    except WizardError:
        return None
    if not runs:
        return None
    active = [r for r in runs if r.active]
    return active[-1] if active else runs[-1]


class ShownRunFollower:
    """Follow the run a screen shows (:func:`run_to_show`). Until there is one, look at every
    poll; while it is not active, every ``look_every`` s: a run started elsewhere (the command
    line) is then followed."""

    def __init__(
        self,
        ws,
        run_id: str | None = None,
        *,
        refresh_every: float = REFRESH_EVERY_S,
        look_every: float = LOOK_EVERY_S,
    ):
        self.ws = ws
        self.run_id = run_id
        self.refresh_every = refresh_every
        self.look_every = look_every
        self.follower: RunFollower | None = None
        self._last_look = float("-inf")

    @property
    def record(self) -> RunRecord | None:
        return self.follower.record if self.follower is not None else None

    @property
    def snapshot(self) -> RunSnapshot | None:
        return self.follower.snapshot if self.follower is not None else None

    def poll(self) -> FollowUpdate | None:
        """What changed since the last poll (:meth:`RunFollower.poll`); None when nothing did
        (``record`` and ``snapshot`` still tell what is shown)."""
        now = time.monotonic()
        follower = self.follower
        if follower is None or (
            not follower.record.active and now - self._last_look >= self.look_every
        ):
            self._last_look = now
            found = run_to_show(self.ws, self.run_id)
            if found is not None and (follower is None or found.id != follower.record.id):
                self.follower = follower = RunFollower(
                    found, refresh_every=self.refresh_every, fresh=True
                )
            elif found is not None and follower is not None:
                follower.record = found
        return follower.poll() if follower is not None else None
