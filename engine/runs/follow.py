"""The one loop that follows a run: the Train pane, `attach` and run-all all read runs this way.

:class:`RunFollower` pairs the run's record (refreshed against what is alive every
``refresh_every`` seconds, and at once when the run ends) with its monitor's snapshot, and hands
out evaluation answers once each is complete (another record follows it, or the run ended).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.runs.monitor import EvalSample, RunMonitor, RunSnapshot
from engine.runs.records import RunRecord

REFRESH_EVERY_S = 2.0  # a refresh scans /proc: not on every poll


@dataclass
class FollowUpdate:
    record: RunRecord
    snapshot: RunSnapshot
    new_samples: list[EvalSample] = field(default_factory=list)  # complete, not handed out yet

    @property
    def ended(self) -> bool:
        return not self.record.active


class RunFollower:
    def __init__(self, record: RunRecord, *, refresh_every: float = REFRESH_EVERY_S):
        self.record = record
        self.monitor = RunMonitor.for_record(record)
        self.refresh_every = refresh_every
        self._last_refresh = float("-inf")
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

    def updates(self, interval: float = 0.5) -> Iterator[FollowUpdate]:
        """Every change until the run ends (the last update has ``ended``)."""
        while True:
            update = self.poll()
            if update is not None:
                yield update
                if update.ended:
                    return
            time.sleep(interval)
