"""Training runs, each in a folder of its own, told truthfully after kills, reboots and full disks.

- ``launch``: may a run start (one lock per workspace; model, dataset and free disk checked),
  start it detached, resume it;
- ``supervise``: the detached supervisor that runs the trainer and writes the outcome;
- ``records``: the run record (``.wizard/runs/<id>.json``) and finding runs;
- ``checkpoints``: a run's own checkpoints, which are whole, where a resume continues;
- ``processes``: which processes are a run's (pid, start time, command line); the one place
  that signals them;
- ``control``: refresh a record against what is alive and what the run left, stop, wait, the
  run a merge takes;
- ``logparse``: the one reader of mmengine's log lines;
- ``phases``: what the trainer does before its first iteration, from its log;
- ``monitor``: follow a run's files incrementally into snapshots;
- ``follow``: the one loop that follows a run (Train pane, `attach`, run-all);
- ``diagnose``: why a run failed, in words, with the fix.

Import the submodules directly (``from engine.runs.launch import start_run``); this package
imports nothing heavy. The layers (pyproject.toml's import-linter contract): follow, launch and
supervise above control, above monitor, diagnose and phases, above checkpoints, logparse,
processes and records.
"""

from engine.runs.control import refresh, stop_run, wait_run
from engine.runs.launch import last_checkpoint, resume_run, start_run
from engine.runs.records import RunRecord, get_run, list_runs

__all__ = [
    "RunRecord",
    "get_run",
    "last_checkpoint",
    "list_runs",
    "refresh",
    "resume_run",
    "start_run",
    "stop_run",
    "wait_run",
]
