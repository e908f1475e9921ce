"""The Merge step (placeholder until it is built)."""

from textual.app import ComposeResult
from textual.widgets import Static

from tui.step import StepPane


class MergePane(StepPane):
    step_id = "merge"
    title = "Merge"

    def compose(self) -> ComposeResult:
        yield Static(
            "The Merge step is not built yet: use the command line (xtuner-wizard --help)."
        )
