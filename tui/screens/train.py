"""The Train step (placeholder until it is built)."""

from textual.app import ComposeResult
from textual.widgets import Static

from tui.step import StepPane


class TrainPane(StepPane):
    step_id = "train"
    title = "Train"

    def compose(self) -> ComposeResult:
        yield Static(
            "The Train step is not built yet: use the command line (xtuner-wizard --help)."
        )
