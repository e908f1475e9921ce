"""The Environment step (placeholder until it is built)."""

from textual.app import ComposeResult
from textual.widgets import Static

from tui.step import StepPane


class EnvironmentPane(StepPane):
    step_id = "environment"
    title = "Environment"

    def compose(self) -> ComposeResult:
        yield Static(
            "The Environment step is not built yet: use the command line (xtuner-wizard --help)."
        )
