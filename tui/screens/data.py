"""The Data step: who the assistant is -> the identity dataset, previewed as you type.

A form for the facts, the style, n and the general share; a preview of sample records and
the statistics, recomputed off the UI thread a moment after the form stops changing; write
the file (atomically; a hand-edited file only after a confirmation, with a backup); validate
an existing file and list its problems.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Button, Input, Label, Select, Static

from engine.data.generate import (
    DEFAULT_N,
    DatasetBundle,
    IdentityFacts,
    build_dataset,
    heldout_path_for,
    record_choice,
    write_dataset,
)
from engine.data.stats import DataStats, dataset_stats, load_tokenizer
from engine.data.validate import validate_file
from engine.errors import WizardError
from engine.pipeline import DEMO_DATA
from tui.step import StepPane
from tui.widgets.confirm import ConfirmReplace

DEBOUNCE_S = 0.3
PREVIEW_RECORDS = 6
HELP = "The preview follows the form: tab moves through it, ctrl+s writes the file."
READ_LIMIT = 20_000_000  # a dataset larger than this is not read to fill the form
FIELD_LABELS = {
    "--name": "Your name",
    "--n": "Records",
    "--general-share": "General share",
    "--style": "Style",
}


@dataclass
class FormValues:
    facts: IdentityFacts
    style: str
    n: int
    general_share: float
    out: str


@dataclass
class Preview:
    token: int
    bundle: DatasetBundle | None = None
    stats: DataStats | None = None
    error: str | None = None


class DataPane(StepPane):
    step_id = "data"
    title = "Data"
    WHAT = (
        "Writes the identity dataset: who the assistant is (your name, its name, maker, base "
        "model, purpose) in the tutorial's exact 2 questions or in varied paraphrases, n "
        "records. The preview and statistics follow the form; ctrl+s writes the file "
        "(a hand-edited one only after a confirmation, with a backup); ctrl+o validates it."
    )
    NEXT = "Once written: ] opens Config, which renders the training config for this file."
    MAIN = "#name"

    BINDINGS = [
        Binding("ctrl+s", "write", "Write file"),
        Binding("ctrl+o", "validate", "Validate file"),
    ]

    # 80x24 first: the form (one row a field) above the preview and statistics; side by side
    # from 110 columns (the screen's -wide class: rules that name the screen are not scoped).
    SCOPED_CSS = False
    DEFAULT_CSS = """
    DataPane #data-help { height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    DataPane #data-main { height: 1fr; }
    DataPane #data-form { height: auto; max-height: 9; }
    DataPane .field { height: 1; }
    DataPane .field Label { width: 15; }
    DataPane .field Input, DataPane .field Select { width: 1fr; }
    DataPane #data-buttons { height: 1; display: none; }
    DataPane #data-buttons Button { margin-right: 1; }
    DataPane #data-side { height: 1fr; border-top: solid $primary-darken-2; }
    DataPane .data-title { color: $text-muted; text-style: bold; height: 1; }
    DataPane #data-stats { height: auto; }
    DataPane #data-preview { height: auto; }
    DataPane #data-problems { height: auto; display: none; color: $warning; }
    DataPane #data-problems.-shown { display: block; }
    DataPane #data-problems.-ok { color: $success; }
    DataPane #data-status { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    Screen.-wide DataPane #data-main { layout: horizontal; }
    Screen.-wide DataPane #data-form { width: 44; height: 100%; max-height: 100%; padding-right: 1; }
    Screen.-wide DataPane .field { margin-bottom: 1; }
    Screen.-wide DataPane #data-buttons { display: block; }
    Screen.-wide DataPane #data-side { width: 1fr; border-top: none; border-left: solid $primary-darken-2; padding-left: 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self._file_timer: Timer | None = None
        self._file_token = 0
        self._token = 0
        # (model dir + its code's trust, tokenizer, why characters when there is none)
        self._tokenizer: tuple[tuple, Any, str | None] | None = None
        self.last_preview: Preview | None = None

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(HELP, id="data-help")
        with Vertical(id="data-main"):
            with VerticalScroll(id="data-form", can_focus=False):
                yield from self._field(
                    "Your name", Input(placeholder="e.g. 伍鲜同志", id="name", compact=True)
                )
                yield from self._field(
                    "Assistant name",
                    Input(placeholder="(none: <name>的小助手)", id="assistant-name", compact=True),
                )
                yield from self._field(
                    "Made by", Input(IdentityFacts.maker, id="maker", compact=True)
                )
                yield from self._field(
                    "Base model", Input(IdentityFacts.base_model, id="base-model", compact=True)
                )
                yield from self._field(
                    "Purpose",
                    Input(
                        placeholder="帮助<name>完成XTuner微调个人小助手的任务",
                        id="purpose",
                        compact=True,
                    ),
                )
                yield from self._field(
                    "Style",
                    Select(
                        [("varied (paraphrases)", "varied"), ("tutorial (exact)", "tutorial")],
                        value="varied",
                        allow_blank=False,
                        id="style",
                        compact=True,
                    ),
                )
                yield from self._field(
                    "Records", Input(str(DEFAULT_N["varied"]), type="integer", id="n", compact=True)
                )
                yield from self._field(
                    "General share", Input("0.1", type="number", id="general-share", compact=True)
                )
                yield from self._field(
                    "File", Input("datas/assistant.json", id="out", compact=True)
                )
                with Horizontal(id="data-buttons"):
                    yield Button("Write", id="write", variant="primary", compact=True)
                    yield Button("Validate", id="validate", compact=True)
            with VerticalScroll(id="data-side"):
                yield Static("Preview", classes="data-title")
                yield Static(Text("Preparing the preview…"), id="data-preview")
                yield Static("Statistics", classes="data-title")
                yield Static(Text(""), id="data-stats")
                problems = Static(Text(""), id="data-problems")
                yield problems
        yield Static(Text(""), id="data-status")

    def _field(self, label: str, widget) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(label)
            yield widget

    # -- state ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        choices = self.workspace.load_state().choices
        from engine.demo import demo_arch

        written = self._written_choices(choices)
        if written is not None:
            # what the workspace holds (written by the wizard or `data generate`), not defaults
            style, n = written
            self.query_one("#style", Select).value = style
            self.query_one("#n", Input).value = str(n)
        elif demo_arch(choices.get("model")):
            # The tiny demo model learns the tutorial's exact pairs in ~100 CPU iterations; a
            # varied set of thousands of records would take a CPU far longer (run-all agrees).
            self.query_one("#style", Select).value = DEMO_DATA["style"]
            self.query_one("#n", Input).value = str(DEMO_DATA["n"])
            self.set_message("demo model: tutorial style with n=50, sized to train on a CPU")
        if choices.get("name"):
            self.query_one("#name", Input).value = str(choices["name"])
        if choices.get("data"):
            self.query_one("#out", Input).value = str(choices["data"])
        self._schedule(0)

    def _written_choices(self, choices: dict[str, Any]) -> tuple[str, int] | None:
        """(style, n) of the dataset the workspace holds: the choices when recorded, else
        read from the file (the tutorial style repeats its 2 questions)."""
        style, n = choices.get("data_style"), choices.get("data_n")
        if style in DEFAULT_N and isinstance(n, int) and n > 0:
            return style, n
        path = self.workspace.path(str(choices.get("data") or "datas/assistant.json"))
        try:
            if not path.is_file() or path.stat().st_size > READ_LIMIT:
                return None
            records = json.loads(path.read_text(encoding="utf-8-sig"))
            questions = {turn["input"] for record in records for turn in record["conversation"]}
        except (OSError, ValueError, TypeError, KeyError):
            return None  # not a dataset this form could have written: keep the defaults
        if not records:
            return None
        if len(questions) <= 2:  # the tutorial's two records, then both again n times
            return "tutorial", max(0, (len(records) - 2) // 2)
        return "varied", len(records)

    def on_step_shown(self) -> None:
        self._show_file_state()

    def _show_file_state(self) -> None:
        self._file_timer = None
        target = self.workspace.path(
            self.query_one("#out", Input).value.strip() or "datas/assistant.json"
        )
        rel = self.workspace.rel(target)
        if not target.exists():
            self.set_message(f"{rel} does not exist yet: ctrl+s writes it.")
        elif self.workspace.is_hand_edited(target):
            self.set_message(
                f"{rel} exists and was not written by the wizard (or was edited): "
                "writing asks first and keeps a backup."
            )
        else:
            self.set_message(f"{rel} exists, as the wizard wrote it.")

    def _file_state_due(self, token: int) -> None:
        # A stopped timer may already have queued its callback: only the latest one counts.
        if token == self._file_token:
            self._show_file_state()

    def _cancel_file_state(self) -> None:
        self._file_token += 1
        if self._file_timer is not None:
            self._file_timer.stop()
            self._file_timer = None

    def set_message(self, text: str) -> None:
        self.query_one("#data-status", Static).update(Text(text, no_wrap=True, overflow="ellipsis"))

    # -- the form ------------------------------------------------------------------------
    def read_form(self) -> FormValues:
        """The form as engine inputs; WizardError names the field that is wrong."""

        def text(wid: str) -> str:
            return self.query_one(f"#{wid}", Input).value.strip()

        style = str(self.query_one("#style", Select).value)
        try:
            n = int(text("n"))
        except ValueError:
            raise WizardError(
                "is not a whole number", where="Records", fix="type e.g. 2000"
            ) from None
        try:
            share = float(text("general-share") or 0)
        except ValueError:
            raise WizardError(
                "is not a number", where="General share", fix="type e.g. 0.1"
            ) from None
        facts = IdentityFacts(
            name=text("name"),
            assistant_name=text("assistant-name"),
            maker=text("maker") or IdentityFacts.maker,
            base_model=text("base-model") or IdentityFacts.base_model,
            purpose=text("purpose"),
        )
        if not facts.name:
            raise WizardError("is empty", where="Your name", fix="type your name")
        if n > 100_000:
            raise WizardError(
                "is too many for a preview", where="Records", fix="use 100000 or fewer"
            )
        return FormValues(facts, style, n, share, text("out") or "datas/assistant.json")

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "out":
            self._cancel_file_state()
            token = self._file_token
            self._file_timer = self.set_timer(DEBOUNCE_S, lambda: self._file_state_due(token))
        else:
            self._schedule()

    @on(Select.Changed, "#style")
    def _style_changed(self, event: Select.Changed) -> None:
        style = str(event.value)
        tutorial = style == "tutorial"
        for wid in ("assistant-name", "maker", "base-model", "purpose", "general-share"):
            field = self.query_one(f"#{wid}", Input)
            field.disabled = tutorial
            if field.parent is not None:  # the tutorial's two records use the name only
                field.parent.display = not tutorial
        n_input = self.query_one("#n", Input)
        other = "varied" if tutorial else "tutorial"
        if n_input.value.strip() in ("", str(DEFAULT_N[other])):
            n_input.value = str(DEFAULT_N[style])
        self._schedule()

    def _schedule(self, delay: float = DEBOUNCE_S) -> None:
        """Recompute the preview once the form has been still for ``delay`` seconds."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self._start_preview) if delay else None
        if not delay:
            self._start_preview()

    def _start_preview(self) -> None:
        self._timer = None
        self._token += 1
        try:
            values = self.read_form()
        except WizardError as exc:
            self._show_preview(Preview(self._token, error=_say(exc)))
            return
        self._compute_preview(self._token, values, self._model_dir())

    def _model_dir(self) -> Path | None:
        model = self.workspace.load_state().choices.get("model")
        if not model:
            return None
        from engine.demo import choice_dir

        path = choice_dir(self.workspace, model) or self.workspace.path(str(model))
        return path if path.is_dir() else None

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-preview")
    def _compute_preview(self, token: int, values: FormValues, model: Path | None) -> None:
        try:
            bundle = build_dataset(
                values.style, values.facts, n=values.n, general_share=values.general_share
            )
            tokenizer, why = self._load_tokenizer(model)
            stats = dataset_stats(
                bundle.train, max_length=2048, tokenizer=tokenizer, chars_because=why
            )
            result = Preview(token, bundle=bundle, stats=stats)
        except WizardError as exc:
            result = Preview(token, error=_say(exc))
        self.app.call_from_thread(self._show_preview, result)

    def _load_tokenizer(self, model: Path | None) -> tuple[Any, str | None]:
        """(the model's tokenizer or None, why not). A folder whose Python is not confirmed
        (Environment, key t) is not loaded: the statistics count characters and say so."""
        from engine.trust import TRUST_KEY, remote_code, untrusted_code

        if model is None:
            return None, None
        code = remote_code(model)
        untrusted = untrusted_code(self.workspace, model) is not None if code else False
        key = (str(model), code.digest if code else None, untrusted)
        if self._tokenizer is None or self._tokenizer[0] != key:
            if untrusted:
                why = (
                    "the model's tokenizer code is not confirmed; "
                    f"{TRUST_KEY} in Environment confirms it"
                )
                self._tokenizer = (key, None, why)
            else:
                try:
                    self._tokenizer = (key, load_tokenizer(model, self.workspace), None)
                except WizardError:
                    self._tokenizer = (key, None, "the model's tokenizer did not load")
        return self._tokenizer[1], self._tokenizer[2]

    def _show_preview(self, result: Preview) -> None:
        if result.token != self._token:
            return  # the form changed since: a newer preview is on its way
        self.last_preview = result
        preview = self.query_one("#data-preview", Static)
        stats = self.query_one("#data-stats", Static)
        if result.error or result.bundle is None or result.stats is None:
            preview.update(Text(result.error or "", style="bold"))
            stats.update(Text(""))
            return
        preview.update(render_samples(result.bundle))
        lines = [*bundle_lines(result.bundle), *result.stats.lines()]
        if result.bundle.notes:
            lines += [f"note: {n}" for n in result.bundle.notes]
        stats.update(Text("\n".join(lines)))

    # -- writing -------------------------------------------------------------------------
    def action_write(self) -> None:
        self._cancel_file_state()
        try:
            values = self.read_form()
        except WizardError as exc:
            self.set_message(_say(exc))
            return
        target = self.workspace.path(values.out)
        edited = [
            self.workspace.rel(p)
            for p in (target, heldout_path_for(target))
            if self.workspace.is_hand_edited(p)
        ]
        if not edited:
            self._write(values, False)
            return

        def answered(replace: bool | None) -> None:
            if replace:
                self._write(values, True)
            else:
                self.set_message(f"Kept {' and '.join(edited)} as it is: nothing written.")

        self.app.push_screen(ConfirmReplace(edited), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-write")
    def _write(self, values: FormValues, force: bool) -> None:
        self.app.call_from_thread(self.set_message, f"Writing {values.out} ...")
        try:
            bundle = build_dataset(
                values.style, values.facts, n=values.n, general_share=values.general_share
            )
            result = write_dataset(self.workspace, bundle, values.out, force=force)
            record_choice(self.workspace, result, values.facts.check())
        except (WizardError, OSError) as exc:
            self.app.call_from_thread(self.set_message, f"Not written: {_say(exc)}")
            return
        ws = self.workspace
        text = f"Wrote {ws.rel(result.path)} ({result.records} records)"
        if result.heldout_path is not None:
            text += f" and {ws.rel(result.heldout_path)}"
        if result.backups:
            text += f"; your version is kept as {ws.rel(result.backups[0])}"
        self.app.call_from_thread(self._written, text)

    def _written(self, text: str) -> None:
        self.set_message(text + ". Next: ] Config.")
        self.mark_done()

    # -- validating ----------------------------------------------------------------------
    def action_validate(self) -> None:
        self._cancel_file_state()
        out = self.query_one("#out", Input).value.strip() or "datas/assistant.json"
        self._validate(out, self._model_dir())

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-validate")
    def _validate(self, out: str, model: Path | None) -> None:
        path = self.workspace.path(out)
        report = validate_file(path)
        lines: list[str]
        if report.ok:
            tokenizer, why = self._load_tokenizer(model)
            stats = dataset_stats(report.records, tokenizer=tokenizer, chars_because=why)
            lines = [
                f"OK: {len(report.records)} records ({report.format}{', BOM' if report.bom else ''})"
            ]
            lines += report.lines(5) + stats.lines()
        else:
            count = len(report.errors) + report.omitted_errors
            lines = [f"{count} problem{'s' if count != 1 else ''}:"] + report.lines(10)
        shown = [line.replace(str(path), out) for line in lines]
        self.app.call_from_thread(self._show_validation, report.ok, shown)

    def _show_validation(self, ok: bool, lines: list[str]) -> None:
        self._cancel_file_state()  # a file-name edit still queued must not hide the verdict
        box = self.query_one("#data-problems", Static)
        box.set_class(True, "-shown")
        box.set_class(ok, "-ok")
        box.update(Text("\n".join(lines)))
        self.set_message("The file is valid." if ok else "The file has problems: see Validation.")

    @on(Button.Pressed, "#write")
    def _write_pressed(self) -> None:
        self.action_write()

    @on(Button.Pressed, "#validate")
    def _validate_pressed(self) -> None:
        self.action_validate()


def _say(exc: BaseException) -> str:
    if isinstance(exc, WizardError):
        where = FIELD_LABELS.get(exc.where or "", exc.where)
        text = f"{where}: {exc.message}" if where else exc.message
        return text + (f" ({exc.fix})" if exc.fix else "")
    return str(exc)


def bundle_lines(bundle: DatasetBundle) -> list[str]:
    c = bundle.counts
    if bundle.style == "tutorial":
        return []  # the preview says it: the 2 records, repeated
    return [
        f"identity {c['identity']} · multi-turn {c['multi_turn']} · general {c['general']}",
        f"distinct identity questions: {c['zh_questions']} zh, {c['en_questions']} en",
    ]


def render_samples(bundle: DatasetBundle, count: int = PREVIEW_RECORDS) -> Group:
    """A few records, each question and answer whole: wrapped at the width, under its Q/A
    mark (a grid: text without spaces, as Chinese is, folds in its column, not below the mark)."""
    from rich.table import Table

    records = bundle.train
    head = Text()
    if bundle.style == "tutorial":
        picks = records[:2]
        head.append(f"these 2 records, repeated: {len(records)} in all", style="italic")
    else:
        step = max(1, len(records) // count)
        picks = records[::step][:count]
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    for n, record in enumerate(picks):
        turns = record["conversation"]
        if n and bundle.style != "tutorial":
            grid.add_row("", "")
        for i, turn in enumerate(turns):
            mark = f"{i + 1}/{len(turns)} " if len(turns) > 1 else ""
            grid.add_row(Text(f"{mark}Q ", style="bold"), Text(turn["input"]))
            grid.add_row(Text(" " * len(mark) + "A ", style="bold"), Text(turn["output"]))
    return Group(head, grid) if head.plain else Group(grid)
