"""Training runs: detached launch, records, control, monitoring and failure diagnosis.

Import the submodules directly (``from engine.runs.launch import start_run``); this package
imports nothing heavy.
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
