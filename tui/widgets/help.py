"""``?``: the open step's help: what it does, its keys, what comes next, and the wizard's keys."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

GLOBAL_KEYS = (
    ("1-6", "open a step"),
    ("] / [", "next / previous step"),
    ("enter", "from the rail into the step"),
    ("esc", "back to the rail (from a field: then q ? ] [ work)"),
    ("tab", "next field"),
    ("ctrl+p", "command palette: every step and action"),
    ("?  f1", "this help"),
    ("q  ctrl+c", "quit (a run that trains goes on)"),
)


def help_text(pane, steps) -> Text:
    """The help of ``pane`` (one of ``steps``) as text (tests read it too)."""
    number = list(steps).index(pane.step_id) + 1
    text = Text()
    text.append(f"Step {number} of {len(steps)}: {pane.title}\n", style="bold")
    text.append(pane.WHAT + "\n\n")
    text.append("Keys of this step\n", style="bold")
    seen = set()
    for _key, binding in pane._bindings:
        if binding.action in seen:
            continue
        seen.add(binding.action)
        key = pane.app.get_key_display(binding)
        text.append(f"  {key:<10} ", style="bold cyan")
        text.append(f"{binding.description}\n")
    text.append("\nNext\n", style="bold")
    text.append(pane.NEXT + "\n\n")
    text.append("Everywhere\n", style="bold")
    for key, what in GLOBAL_KEYS:
        text.append(f"  {key:<10} ", style="bold cyan")
        text.append(f"{what}\n")
    return text


class HelpScreen(ModalScreen[None]):
    """The open step's help; esc, ? or q closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 100%; max-width: 90; height: 100%; max-height: 30;
        border: round $primary; background: $surface; padding: 0 1;
    }
    HelpScreen VerticalScroll { height: 1fr; }
    HelpScreen #help-close { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,question_mark,q,f1", "close", "Close help"),
    ]

    def __init__(self, pane, steps) -> None:
        super().__init__()
        self._text = help_text(pane, steps)
        self._title = f"Help: {pane.title}"

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self._title
            with VerticalScroll(can_focus=True):
                yield Static(self._text, id="help-text")
            yield Static("esc, ? or q closes this help", id="help-close")

    def action_close(self) -> None:
        self.dismiss(None)
