"""The Data step (placeholder until it is built)."""

from textual.app import ComposeResult
from textual.widgets import Static

from tui.step import StepPane


class DataPane(StepPane):
    step_id = "data"
    title = "Data"

    def compose(self) -> ComposeResult:
        yield Static("The Data step is not built yet: use the command line (xtuner-wizard --help).")
