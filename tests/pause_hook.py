"""An mmengine hook that holds a real xtuner run at an iteration until the test releases it.

A test that must act at a point of a real run (kill right after the first checkpoint) adds to
the config::

    from pause_hook import PauseAfterIteration
    custom_hooks = custom_hooks + [dict(type=PauseAfterIteration, at=2)]

and puts this folder on the trainer's PYTHONPATH. After iteration ``at`` (after mmengine's
CheckpointHook has saved it: this hook runs last), rank 0 creates ``<work_dir>/pause.held.<at>``
and every rank waits until ``<work_dir>/pause.release.<at>`` exists, so the
test acts on an event the run signals, whatever the machine's speed.
"""

from __future__ import annotations

import time
from pathlib import Path

from mmengine.hooks import Hook


class PauseAfterIteration(Hook):
    priority = "LOWEST"  # after CheckpointHook (VERY_LOW) has written the checkpoint

    def __init__(self, at: int):
        self.at = int(at)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 != self.at:
            return
        work_dir = Path(runner.work_dir)
        if runner.rank == 0:  # the rank that saves: its checkpoint is written by now
            (work_dir / f"pause.held.{self.at}").touch()
        release = work_dir / f"pause.release.{self.at}"
        while not release.exists():
            time.sleep(0.05)


PAUSE_CONFIG_TAIL = """
from pause_hook import PauseAfterIteration
custom_hooks = custom_hooks + [dict(type=PauseAfterIteration, at={at})]
"""
