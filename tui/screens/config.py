"""The Config step (placeholder until it is built)."""

from textual.app import ComposeResult
from textual.widgets import Static

from tui.step import StepPane


class ConfigPane(StepPane):
    step_id = "config"
    title = "Config"

    def compose(self) -> ComposeResult:
        yield Static(
            "The Config step is not built yet: use the command line (xtuner-wizard --help)."
        )
