"""Asking first: before something the user made is replaced (one modal for every step), and
before a model folder's Python is trusted (the Environment step)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmReplace(ModalScreen[bool]):
    """Replace files the user changed by hand? ``n``/escape keeps them (the safe default)."""

    DEFAULT_CSS = """
    ConfirmReplace { align: center middle; }
    ConfirmReplace > Vertical {
        width: 64; height: auto; padding: 1 2;
        border: thick $warning; background: $surface;
    }
    ConfirmReplace #confirm-buttons { height: auto; margin-top: 1; }
    ConfirmReplace Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Replace"),
        Binding("n,escape", "answer(False)", "Keep my file"),
    ]

    def __init__(self, files: list[str] | str) -> None:
        super().__init__()
        self.files = [files] if isinstance(files, str) else list(files)

    def compose(self) -> ComposeResult:
        names = " and ".join(self.files)
        verb = "was" if len(self.files) == 1 else "were"
        with Vertical():
            yield Static(
                f"{names} {verb} changed by hand since the wizard wrote it.\n"
                "Replace it? Your version is kept in .wizard/backups.",
                markup=False,
            )
            with Horizontal(id="confirm-buttons"):
                yield Button("Replace (y)", id="confirm-yes", variant="warning")
                yield Button("Keep my file (n)", id="confirm-no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ConfirmTrust(ModalScreen[bool]):
    """Let transformers run a model folder's Python? Names the folder, the files and their
    hash (what is confirmed, once per version); ``n``/escape runs nothing (the safe default)."""

    DEFAULT_CSS = """
    ConfirmTrust { align: center middle; }
    ConfirmTrust > Vertical {
        width: 72; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        border: thick $warning; background: $surface;
    }
    ConfirmTrust #trust-buttons { height: auto; margin-top: 1; }
    ConfirmTrust Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Trust this code"),
        Binding("n,escape", "answer(False)", "Don't run it"),
    ]

    def __init__(self, folder: str, files: list[str] | tuple[str, ...], digest: str) -> None:
        super().__init__()
        self.folder, self.files, self.digest = folder, list(files), digest

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                f"{self.folder} brings Python that transformers runs when it loads the model "
                f"(trust_remote_code):\n  {', '.join(self.files)}\n  sha256 {self.digest[:12]}\n"
                "Read those files first. Trust this version? Training, the Data step's "
                "tokenizer and Chat then run it; changed files ask again.",
                markup=False,
            )
            with Horizontal(id="trust-buttons"):
                yield Button("Trust it (y)", id="trust-yes", variant="warning")
                yield Button("Don't run it (n)", id="trust-no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#trust-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "trust-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ConfirmRemove(ModalScreen[bool]):
    """Remove folders the wizard made (older merged models)? Names each with its size;
    ``n``/escape keeps them (the safe default)."""

    DEFAULT_CSS = """
    ConfirmRemove { align: center middle; }
    ConfirmRemove > Vertical {
        width: 64; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
        border: thick $warning; background: $surface;
    }
    ConfirmRemove #remove-buttons { height: auto; margin-top: 1; }
    ConfirmRemove Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Remove"),
        Binding("n,escape", "answer(False)", "Keep them"),
    ]

    def __init__(self, folders: list[tuple[str, str]]) -> None:
        super().__init__()
        self.folders = list(folders)  # (name, size as shown)

    def compose(self) -> ComposeResult:
        lines = "\n".join(f"  {name}  {size}" for name, size in self.folders)
        with Vertical():
            yield Static(
                f"Remove these older merged models for good?\n{lines}\n"
                "merged/ and merged.previous/ stay.",
                markup=False,
            )
            with Horizontal(id="remove-buttons"):
                yield Button("Remove (y)", id="remove-yes", variant="warning")
                yield Button("Keep them (n)", id="remove-no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#remove-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "remove-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
