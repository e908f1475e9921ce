"""The Chat step (placeholder until it is built)."""

from textual.app import ComposeResult
from textual.widgets import Static

from tui.step import StepPane


class ChatPane(StepPane):
    step_id = "chat"
    title = "Chat"

    def compose(self) -> ComposeResult:
        yield Static("The Chat step is not built yet: use the command line (xtuner-wizard --help).")
