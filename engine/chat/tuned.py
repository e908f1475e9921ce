"""Which tuned model the chat talks to: the one decision behind `chat` and the Chat step's
choice (engine.selection decides the model, dataset and config; this one reads the runs,
which sit above engine.workspace and engine.selection, so it lives here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.workspace import Workspace


@dataclass(frozen=True)
class TunedModel:
    """What "the tuned model" is: the complete merged model, or a finished run's newest whole
    checkpoint (its LoRA folded into the base in memory: engine/chat/adapter.py), so the first
    answer need not wait for the merge, and an earlier run stays one to talk to."""

    kind: str  # "merged" | "run"
    path: Path  # the merged folder, or the run's checkpoint
    run_id: str | None = None

    @property
    def key(self) -> str:
        """A stable name for a choice (the wizard's Select values)."""
        return "merged" if self.kind == "merged" else f"run:{self.run_id}"

    def label(self, ws: Workspace) -> str:
        if self.kind == "merged":
            return ws.rel(self.path)
        return f"run {self.run_id} ({self.path.name})"


def tuned_models(ws: Workspace) -> list[TunedModel]:
    """Every tuned model of the workspace, the default first: the merged model when complete,
    then each finished run with a whole checkpoint, newest first."""
    from engine.export import latest_merged
    from engine.runs.checkpoints import is_zero_checkpoint, newest_checkpoint
    from engine.runs.control import refresh
    from engine.runs.records import list_runs

    found: list[TunedModel] = []
    merged = latest_merged(ws)
    if merged is not None:
        found.append(TunedModel("merged", merged))
    for record in reversed([refresh(r) for r in list_runs(ws)]):
        if record.active:
            continue
        checkpoint = newest_checkpoint(record.work_dir)
        if checkpoint is not None and not is_zero_checkpoint(checkpoint):
            found.append(TunedModel("run", checkpoint, record.id))
    return found


def default_tuned(ws: Workspace) -> TunedModel | None:
    """The tuned model `chat`, the Chat step and run-all's first answer use by default."""
    found = tuned_models(ws)
    return found[0] if found else None
