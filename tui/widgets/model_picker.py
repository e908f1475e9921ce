"""The model picker: the model folders found on this machine, and a download from the hub.

``ModelPicker`` lists what :func:`engine.models.discover` finds (the workspace, the hub caches,
the share folders), one line each, with the highlighted model's details below (path, remote
code, the XTuner configs that fit it, what keeps it from training). Enter chooses it, ``l``
links it into the workspace as ``ORG/NAME`` and chooses the link: the tutorial's model
(internlm2-chat-1_8b, e.g. ``internlm/internlm2-chat-1_8b`` from the hub) under the tutorial's
name, ``Shanghai_AI_Laboratory/internlm2-chat-1_8b``. A ``get ORG/NAME`` field starts
:func:`engine.download.start_download` (a detached worker) and shows its progress from the job
file; a download still running when the picker opens (started before, from here or from
``model get``) is followed again.

``ModelPickerScreen`` shows the picker over the current step (the Environment step opens it
with ``m``) and dismisses with the chosen path (None: nothing chosen).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from engine.download import DownloadJob
    from engine.models import ModelEntry
    from engine.workspace import Workspace

POLL_S = 0.5


def entry_line(e: ModelEntry, width: int = 76) -> Text:
    """One row: name, architecture, parameters, size, where it was found."""
    from engine.envcheck import human_bytes
    from engine.models import format_params

    arch = (e.architecture or e.model_type or "?").replace("ForCausalLM", "")
    tail = (
        f" {arch} {format_params(e.parameters, e.parameters_estimated)} "
        f"{human_bytes(e.size_bytes)} {e.source}"
    )
    name = e.name if len(e.name) + len(tail) <= width else e.name[: width - len(tail) - 1] + "…"
    text = Text(name, style="" if e.usable else "dim")
    text.append(tail, style="dim" if e.usable else "dim red")
    return text


def entry_detail(e: ModelEntry) -> Text:
    from engine.models import is_tutorial_model, workspace_name

    text = Text(str(e.path), style="bold")
    text.append(f"\n{e.dtype or '?'}")
    if e.remote_code:
        text.append(f" · remote code: {', '.join(e.remote_code)}", style="yellow")
    else:
        text.append(" · no remote code")
    if e.configs:
        more = f" (+{len(e.configs) - 2})" if len(e.configs) > 2 else ""
        text.append(f"\nconfigs: {', '.join(e.configs[:2])}{more}", style="cyan")
    else:
        text.append(f"\nno built-in config for model_type {e.model_type!r}", style="yellow")
    for p in e.problems:
        text.append(f"\n✗ {p}", style="bold red")
    if is_tutorial_model(e) and e.usable:
        text.append(f"\nl links it as {workspace_name(e)}, the tutorial's layout", style="dim")
    return text


class ModelPicker(Vertical):
    """Model folders found here, and a download field."""

    DISCOVER: ClassVar[bool] = True  # tests that feed recorded entries turn this off

    BINDINGS = [
        Binding("l", "link", "Link into workspace"),
        Binding("f5", "rescan", "Rescan"),
    ]

    DEFAULT_CSS = """
    ModelPicker { height: auto; }
    ModelPicker #mp-list { height: auto; max-height: 8; border: none; }
    ModelPicker #mp-detail { height: auto; min-height: 3; margin-bottom: 1; }
    ModelPicker #mp-get { width: 1fr; }
    ModelPicker #mp-progress { display: none; }
    ModelPicker #mp-progress.busy { display: block; }
    ModelPicker #mp-status { height: auto; color: $text-muted; }
    """

    class Chosen(Message):
        """The user chose a model folder (Enter, or ``l`` after linking)."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, workspace: Workspace, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workspace = workspace
        self.entries: list[ModelEntry] = []
        self._job: DownloadJob | None = None
        self._poller = None

    def compose(self) -> ComposeResult:
        yield OptionList(id="mp-list", compact=True)
        yield Static("", id="mp-detail")
        yield Input(placeholder="get from the hub: ORG/NAME, Enter", id="mp-get", compact=True)
        yield ProgressBar(total=100, show_eta=False, id="mp-progress")
        yield Static("Searching for model folders…", id="mp-status")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker's messages do not bubble: what one raised goes to the app's one handler
        (one line on the screen, the traceback in .wizard/wizard.log), not out of the app."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.app.report_error(event.worker.error, f"model picker: {event.worker.name}")

    def on_mount(self) -> None:
        if self.DISCOVER:
            self.rescan()
        self._resume()

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-resume")
    def _resume(self) -> None:
        """Follow the workspace's download that still runs (the newest, when several do)."""
        from engine.download import list_jobs

        running = [j for j in list_jobs(self.workspace) if j.active]
        if running:
            job = max(running, key=lambda j: j.started)
            self.app.call_from_thread(self._resumed, job)

    def _resumed(self, job: DownloadJob) -> None:
        if self._job is None and self.is_attached:  # not one started here meanwhile
            self._follow(job)

    # -- the list ------------------------------------------------------------------------
    def action_rescan(self) -> None:
        self.rescan()

    def rescan(self, news: Text | None = None) -> None:
        """Search again; ``news`` (a finished download's line) stays on top of the count."""
        self._discover(news)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-discovery")
    def _discover(self, news: Text | None = None) -> None:
        from engine.models import discover

        model = self.workspace.load_state().choices.get("model")
        found = discover(self.workspace.root, model=model)
        self.app.call_from_thread(self.show_entries, found, news)

    def show_entries(self, entries: list[ModelEntry], news: Text | None = None) -> None:
        self.entries = list(entries)
        olist = self.query_one("#mp-list", OptionList)
        olist.clear_options()
        olist.add_options([Option(entry_line(e), id=str(i)) for i, e in enumerate(self.entries)])
        if self.entries:
            olist.highlighted = 0
            self._show_detail(0)
            usable = sum(e.usable for e in self.entries)
            count = (
                f"{len(self.entries)} found ({usable} usable). Enter: choose · l: link as "
                "ORG/NAME into the workspace · F5: rescan"
            )
            if news is None:
                self.set_status(count)
            else:  # the download's outcome must not be wiped by the list it refreshed
                self.query_one("#mp-status", Static).update(Text.assemble(news, "\n", count))
        else:
            self.query_one("#mp-detail", Static).update("")
            self.set_status(
                "No model folders found. Get one below, or copy a folder here and start the "
                "wizard with --model DIR."
            )

    def set_status(self, text: str, style: str = "") -> None:
        self.query_one("#mp-status", Static).update(Text(text, style=style))

    @property
    def highlighted(self) -> ModelEntry | None:
        index = self.query_one("#mp-list", OptionList).highlighted
        return self.entries[index] if index is not None and index < len(self.entries) else None

    def _show_detail(self, index: int | None) -> None:
        if index is not None and index < len(self.entries):
            self.query_one("#mp-detail", Static).update(entry_detail(self.entries[index]))

    @on(OptionList.OptionHighlighted, "#mp-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_detail(event.option_index)

    @on(OptionList.OptionSelected, "#mp-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        entry = self.entries[event.option_index]
        if not entry.usable:
            self.set_status(f"✗ {entry.name}: {entry.problems[0]}", "bold red")
            return
        self.post_message(self.Chosen(entry.path))

    def action_link(self) -> None:
        from engine.download import link_into_workspace
        from engine.errors import WizardError

        entry = self.highlighted
        if entry is None:
            return
        from engine.models import workspace_name

        try:
            link = link_into_workspace(self.workspace, entry.path, workspace_name(entry))
        except WizardError as exc:
            self.set_status(f"✗ {exc}", "bold red")
            return
        self.set_status(
            f"✓ linked {link.relative_to(self.workspace.root)} -> {entry.path}", "green"
        )
        self.post_message(self.Chosen(link))

    # -- the download --------------------------------------------------------------------
    @on(Input.Submitted, "#mp-get")
    def _get(self, event: Input.Submitted) -> None:
        repo = event.value.strip()
        if repo:
            self.set_status(f"Asking the hub for {repo}…")
            self._start(repo)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-download")
    def _start(self, repo: str) -> None:
        from engine.download import start_download
        from engine.errors import WizardError

        try:
            job = start_download(self.workspace, repo)
        except WizardError as exc:
            self.app.call_from_thread(self.set_status, f"✗ {exc}", "bold red")
            return
        self.app.call_from_thread(self._follow, job)

    def _follow(self, job: DownloadJob) -> None:
        self._job = job
        self.query_one("#mp-progress", ProgressBar).add_class("busy")
        if self._poller is not None:
            self._poller.stop()
        self._poller = self.set_interval(POLL_S, self._poll)
        self._poll()

    def _poll(self) -> None:
        from engine.download import current_job

        if self._job is None:
            return
        job = current_job(self.workspace, self._job.repo_id, self._job.source) or self._job
        self.show_job(job)
        if not job.active:
            self._job = None
            if self._poller is not None:
                self._poller.stop()
                self._poller = None
            if job.state == "done":
                self.rescan(news=Text(job.describe(), style="green"))

    def show_job(self, job: DownloadJob) -> None:
        """The download's progress (also fed from tests)."""
        bar = self.query_one("#mp-progress", ProgressBar)
        bar.set_class(job.active, "busy")
        if job.bytes_total:
            bar.update(total=job.bytes_total, progress=job.bytes_done)
        style = {"failed": "bold red", "done": "green"}.get(job.state, "")
        self.set_status(job.describe(), style)


class ModelPickerScreen(ModalScreen["Path | None"]):
    """The picker over the current step; dismissed with the chosen folder or None."""

    DEFAULT_CSS = """
    ModelPickerScreen { align: center middle; }
    ModelPickerScreen > Vertical {
        width: 100%; max-width: 100; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    ModelPickerScreen #mps-title { text-style: bold; }
    """
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Choose the base model", id="mps-title")
            yield ModelPicker(self.workspace, id="model-picker")

    def on_mount(self) -> None:
        self.query_one("#mp-list", OptionList).focus()

    @on(ModelPicker.Chosen)
    def _chosen(self, event: ModelPicker.Chosen) -> None:
        self.dismiss(event.path)

    def action_close(self) -> None:
        self.dismiss(None)
