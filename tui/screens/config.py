"""The Config step: a built-in config, the tutorial's edits, a profile, your settings.

Left: the base config (filterable, the tutorial's preselected), the profile, and a form of
the settings the tutorial lists, each with a one-line explanation. Right: the estimate
(memory per GPU, iterations, time) and the live, coloured unified diff against the built-in,
recomputed off the UI thread a moment after the form stops changing. ctrl+s writes
``<base>_copy.py`` (a hand-edited one only after a confirmation, with a backup); ctrl+o opens
it in $EDITOR and re-reads it after.

The GPUs field and the DeepSpeed stage are how the Train step launches the config; they are
kept in the workspace's choices ``gpus`` (int) and ``deepspeed`` (a stage name or None) when
changed and when the config is written, and the launch command (``NPROC_PER_NODE=N xtuner
train CONFIG --deepspeed STAGE``) is shown under the diff.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, VerticalScroll
from textual.timer import Timer
from textual.widgets import Input, Label, OptionList, Select, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from engine.config import (
    PROFILES,
    TUTORIAL_BASE,
    RenderedConfig,
    detect_hardware,
    diff_text,
    list_builtin,
    render_config,
    settings_of_text,
    write_config,
)
from engine.config.api import estimate_for
from engine.config.diff import unified_diff
from engine.config.estimate import format_duration
from engine.config.profiles import PROFILE_HELP, Hardware
from engine.config.render import py_source
from engine.config.settings import EXPLAIN
from engine.distributed import LaunchPlan, deepspeed_stages, deepspeed_version, human_command
from engine.errors import WizardError
from engine.selection import dataset_path, model_dir
from tui.step import StepPane
from tui.widgets.confirm import ConfirmReplace

DEBOUNCE_S = 0.3
HELP = "The diff follows the settings (f2 switches tabs); ctrl+s writes the config."

GPUS_HELP = "GPUs to train on; 2 or more use torchrun"
STAGE_HELP = {  # one line each: the form column is 43 characters wide
    "none": "no DeepSpeed (plain DDP with 2+ GPUs)",
    "zero1": "ZeRO-1: optimizer states split over GPUs",
    "zero2": "ZeRO-2: + gradients split (usual pick)",
    "zero2_offload": "ZeRO-2, optimizer in CPU RAM: slower",
    "zero3": "ZeRO-3: + weights split (model > 1 GPU)",
    "zero3_offload": "ZeRO-3, weights+optimizer in CPU RAM",
}

# The settings the tutorial lists (and the wizard's keys for what it sets inside dicts).
FORM_KEYS = (
    "max_length",
    "pack_to_max_length",
    "batch_size",
    "accumulative_counts",
    "max_epochs",
    "max_iters",
    "lr",
    "warmup_ratio",
    "save_steps",
    "save_total_limit",
    "evaluation_freq",
    "evaluation_inputs",
    "SYSTEM",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "quantization",
    "attn_implementation",
    "use_activation_checkpointing",
)


def show_value(value: Any) -> str:
    """How a setting appears in its field: text as is, anything else as Python."""
    if isinstance(value, str):
        return value
    try:
        return py_source(value)
    except TypeError:
        return str(value)


_SETTING = re.compile(r"^[+-][A-Za-z_]\w* = ")  # a top-level `name = value` of the config
_PLUMBING = re.compile(r"^[+-](from |import |__import__\(|#)")  # imports and runtime patches


def edited_lines(diff: str, root: Path | None = None) -> Text:
    """The diff's changed lines only (no context), each wrapped whole: the step's point.

    The settings a user edits in the tutorial (model, dataset, lengths, ...) come first, then
    the lines inside dicts, then the wizard's plumbing (imports, runtime patches), so at 80x24
    the edits that matter are in sight. Paths under ``root`` (the workspace) read ``./``.
    """
    changed = [
        line
        for line in diff.splitlines()
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    if not changed:
        return Text("No edits: the config is the built-in one.", style="dim")

    def rank(line: str) -> int:
        if _PLUMBING.match(line):
            return 2
        return 0 if _SETTING.match(line) else 1

    ordered = sorted(changed, key=rank)  # stable: each - old / + new pair stays together
    prefix = f"{root}/" if root is not None else None
    text = Text()
    head = f"{sum(ln.startswith('+') for ln in changed)} lines set by the wizard"
    text.append(head + (" (./ is the workspace):\n" if prefix else ":\n"), style="bold")
    plumbing_shown = False
    for line in ordered:
        if rank(line) == 2 and not plumbing_shown:
            plumbing_shown = True
            text.append("the wizard's imports and runtime patches:\n", style="dim")
        shown = line.replace(prefix, "./") if prefix else line
        text.append(shown + "\n", style="green" if line.startswith("+") else "red")
    text.rstrip()
    return text


def colour_diff(diff: str) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = "dim"
        text.append(line + "\n", style=style)
    return text


@dataclass
class Request:
    token: int
    base: str
    profile: str
    model: Path | None
    data: Path
    set_args: list[str]
    gpus: int = 1  # the launch choice: the estimate's iterations are per this many processes


@dataclass
class Result:
    token: int
    rendered: RenderedConfig | None = None
    diff: str = ""
    estimate: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str = ""


class ConfigPane(StepPane):
    step_id = "config"
    title = "Config"
    WHAT = (
        "Renders the training config: a built-in XTuner config with the tutorial's edits "
        "(model, dataset, prompt template), a profile for this hardware and your settings. "
        "The Diff tab shows what changes against the built-in (edited lines first), Settings "
        "the form, Estimate the memory, iterations and time and the launch command. ctrl+s "
        "writes <base>_copy.py (a hand-edited one only after a confirmation, with a backup); "
        "ctrl+o opens it in $EDITOR; ctrl+r resets the form."
    )
    NEXT = "Once written: ] opens Train, where s starts the run."
    MAIN = "#cfg-diff-box"

    BINDINGS = [
        Binding("ctrl+s", "write", "Write config"),
        Binding("f2", "next_tab", "Next tab"),
        Binding("ctrl+o", "edit", "Open in $EDITOR", show=False),
        Binding("ctrl+r", "reset", "Reset form", show=False),
    ]

    DEFAULT_CSS = """
    ConfigPane #cfg-help { height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    ConfigPane #cfg-tabs { height: 1fr; }
    ConfigPane #cfg-tabs > ContentSwitcher { height: 1fr; }
    ConfigPane TabPane { padding: 0; height: 1fr; }
    ConfigPane #cfg-brief { height: auto; color: $text-muted; }
    ConfigPane #cfg-form { height: 1fr; }
    ConfigPane #base-filter { width: 1fr; }
    ConfigPane #base-list { height: 5; border: none; text-wrap: nowrap; text-overflow: ellipsis; }
    ConfigPane .field { height: 1; }
    ConfigPane .field Label { width: 20; }
    ConfigPane .field Input, ConfigPane .field Select { width: 1fr; }
    ConfigPane .explain { height: 1; color: $text-muted; margin-bottom: 1;
        text-wrap: nowrap; text-overflow: ellipsis; }
    ConfigPane .field Input.-override { text-style: bold; }
    ConfigPane #cfg-estimate { height: auto; }
    ConfigPane #cfg-diff-box { height: 1fr; }
    ConfigPane #cfg-edits { height: auto; width: 1fr; }
    ConfigPane #cfg-diff-title { height: 1; margin-top: 1; text-style: bold; }
    ConfigPane #cfg-diff { width: auto; }
    ConfigPane #cfg-status { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    ConfigPane #cfg-launch { height: auto; margin-top: 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self._token = 0
        self._render_lock = threading.Lock()
        self._wanted: Request | None = None  # the newest request not yet rendered
        self._rendering = False  # a render worker is running (it takes _wanted next)
        self._base = TUTORIAL_BASE
        self._hardware: Hardware | None = None
        self._shown: dict[str, str] = {}  # key -> the value the last render showed
        self.overrides: dict[str, str] = {}  # key -> what the user typed
        self.last_result: Result | None = None
        self._auto_gpus = "1"  # what the wizard put in the GPUs field (not the user)
        self._estimated_gpus: int | None = None  # the GPUs the last estimate was for
        self._deepspeed_here = deepspeed_version()
        self._opened_on_file = False

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(HELP, id="cfg-help")
        with TabbedContent(id="cfg-tabs", initial="tab-diff"):
            with TabPane("Diff", id="tab-diff"):
                yield Static(Text(""), id="cfg-brief")
                with ScrollableContainer(id="cfg-diff-box"):
                    yield Static(Text(""), id="cfg-edits")
                    yield Static("Whole diff against the built-in config", id="cfg-diff-title")
                    yield Static(Text(""), id="cfg-diff")
            with TabPane("Settings", id="tab-form"):
                yield from self._compose_form()
            with TabPane("Estimate", id="tab-estimate"):
                with VerticalScroll(id="cfg-estimate-box", can_focus=False):
                    yield Static(Text(""), id="cfg-estimate")
                    yield Static(Text(""), id="cfg-launch")
        yield Static(Text(""), id="cfg-status")

    def _compose_form(self) -> ComposeResult:
        with VerticalScroll(id="cfg-form", can_focus=False):
            with Horizontal(classes="field"):
                yield Label("Base config")
                yield Input(placeholder="filter, e.g. internlm2", id="base-filter", compact=True)
            yield OptionList(id="base-list", compact=True)
            yield Static(Text(self._base), id="base-name", classes="explain")
            with Horizontal(classes="field"):
                yield Label("Profile")
                yield Select(
                    [(f"{p}", p) for p in PROFILES],
                    value="auto",
                    allow_blank=False,
                    id="profile",
                    compact=True,
                )
            yield Static(PROFILE_HELP["auto"], id="profile-help", classes="explain")
            with Horizontal(classes="field"):
                yield Label("GPUs")
                yield Input(value="1", id="launch-gpus", type="integer", compact=True)
            yield Static(GPUS_HELP, id="gpus-help", classes="explain")
            with Horizontal(classes="field"):
                yield Label("DeepSpeed")
                yield Select(
                    [("none", "none")] + [(s, s) for s in deepspeed_stages()],
                    value="none",
                    allow_blank=False,
                    id="launch-deepspeed",
                    compact=True,
                )
            yield Static(STAGE_HELP["none"], id="deepspeed-help", classes="explain")
            for key in FORM_KEYS:
                with Horizontal(classes="field"):
                    yield Label(key)
                    yield Input(id=f"f-{key}", compact=True)
                yield Static(EXPLAIN.get(key, ""), classes="explain")

    def action_next_tab(self) -> None:
        tabs = self.query_one("#cfg-tabs", TabbedContent)
        order = ["tab-diff", "tab-form", "tab-estimate"]
        tabs.active = (
            order[(order.index(tabs.active) + 1) % len(order)] if tabs.active in order else order[0]
        )
        if tabs.active == "tab-form":
            self.query_one("#base-filter", Input).focus()
        elif tabs.active == "tab-diff":
            self.query_one("#cfg-diff-box").focus()

    def on_mount(self) -> None:
        choices = self.workspace.load_state().choices
        profile = choices.get("profile")
        if profile in PROFILES:
            self.query_one("#profile", Select).value = profile
        saved = choices.get("config_base")
        if isinstance(saved, str) and saved:
            self._base = saved
        else:
            self._propose_base()
        gpus = choices.get("gpus")
        if isinstance(gpus, int) and gpus >= 1:
            self.query_one("#launch-gpus", Input).value = str(gpus)
        stage = choices.get("deepspeed")
        select = self.query_one("#launch-deepspeed", Select)
        if isinstance(stage, str) and stage in STAGE_HELP:
            select.value = stage
        self._show_launch()
        self._fill_base_list("")
        self._schedule(0)

    def _propose_base(self) -> None:
        """No base chosen yet: the best fit for the model's family (Qwen2 -> qwen1_5_...)."""
        from engine.config.api import proposed_base_for

        model = self._model_dir()
        if model is not None:
            self._base = proposed_base_for(model)
            self.query_one("#base-name", Static).update(Text(self._base))

    def on_step_shown(self) -> None:
        if not self.workspace.load_state().choices.get("config_base"):
            self._propose_base()  # the model may have changed on another step
            self._fill_base_list(self.query_one("#base-filter", Input).value.strip())
            self._show_launch()
        self._show_file_state()
        self._schedule(0)  # the dataset or model may have changed on another step

    # -- the form ------------------------------------------------------------------------
    def _fill_base_list(self, pattern: str) -> None:
        try:
            names = list_builtin(pattern or None)
        except WizardError as exc:
            self.set_message(str(exc))
            return
        model = self._model_dir()
        if not pattern and model is not None:  # the model family's configs first
            from engine.config.api import fitting_configs_for

            fits = [n for n in fitting_configs_for(model) if n in names]
            names = fits + [n for n in names if n not in fits]
        olist = self.query_one("#base-list", OptionList)
        olist.clear_options()
        olist.add_options([Option(n, id=n) for n in names])
        if self._base in names:
            olist.highlighted = names.index(self._base)

    @on(Input.Changed, "#base-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill_base_list(event.value.strip())

    @on(OptionList.OptionSelected, "#base-list")
    def _base_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id and event.option.id != self._base:
            self._base = event.option.id
            self.query_one("#base-name", Static).update(Text(self._base))
            self._show_launch()
            self._schedule()

    @on(Select.Changed, "#profile")
    def _profile_changed(self, event: Select.Changed) -> None:
        self.query_one("#profile-help", Static).update(PROFILE_HELP.get(str(event.value), ""))
        self._schedule()

    # -- how the Train step launches it: GPUs and DeepSpeed ------------------------------
    def launch_choice(self) -> tuple[int | None, str | None]:
        """(GPUs, DeepSpeed stage or None) as the form says; GPUs None when not a number >= 1."""
        text = self.query_one("#launch-gpus", Input).value.strip()
        gpus = int(text) if text.isdigit() and int(text) >= 1 else None
        stage = str(self.query_one("#launch-deepspeed", Select).value)
        return gpus, (None if stage == "none" else stage)

    def _store_launch(self, *, always: bool = False) -> None:
        gpus, stage = self.launch_choice()
        ws = self.workspace
        choices = ws.load_state().choices
        if gpus is not None and (always or "gpus" in choices or self._gpus_typed()):
            if "gpus" not in choices or choices["gpus"] != gpus:
                ws.set_choice("gpus", gpus)
        if always or "deepspeed" in choices or stage is not None:
            if "deepspeed" not in choices or choices["deepspeed"] != stage:
                ws.set_choice("deepspeed", stage)

    def _gpus_typed(self) -> bool:
        return self.query_one("#launch-gpus", Input).value.strip() != self._auto_gpus

    @on(Input.Changed, "#launch-gpus")
    def _gpus_changed(self, event: Input.Changed) -> None:
        self._show_launch()
        self._store_launch()
        gpus, _ = self.launch_choice()
        if gpus is not None and gpus != self._estimated_gpus:
            self._schedule()  # the iterations are per launched process: estimate again

    @on(Select.Changed, "#launch-deepspeed")
    def _deepspeed_changed(self, event: Select.Changed) -> None:
        self.query_one("#deepspeed-help", Static).update(STAGE_HELP.get(str(event.value), ""))
        self._show_launch()
        self._store_launch()

    def _show_launch(self) -> None:
        gpus, stage = self.launch_choice()
        out = Text(no_wrap=False)
        if gpus is None:
            out.append("GPUs: give a whole number, 1 or more", style="bold red")
        else:
            plan = LaunchPlan(gpus, deepspeed=stage, config=self._target())
            out.append(human_command(plan, rel_to=self.workspace.root))
            found = len(self._hardware.gpus) if self._hardware is not None else None
            if found is not None and gpus > max(found, 1):
                out.append(
                    f"\n{found} GPU(s) found here: the Train step will refuse {gpus}",
                    style="bold red",
                )
            if stage is not None and self._deepspeed_here is None:
                out.append(
                    "\ndeepspeed is not installed here: pip install -e '.[deepspeed]'",
                    style="bold red",
                )
        self.query_one("#cfg-launch", Static).update(out)

    def _default_gpus(self) -> None:
        """Once the hardware is known: the GPUs found (at least 1), unless chosen already."""
        if self._hardware is None or "gpus" in self.workspace.load_state().choices:
            self._show_launch()
            return
        field = self.query_one("#launch-gpus", Input)
        if field.value.strip() != self._auto_gpus:
            self._show_launch()
            return  # the user typed a number
        self._auto_gpus = str(max(1, len(self._hardware.gpus)))
        if field.value != self._auto_gpus:
            field.value = self._auto_gpus
        else:
            self._show_launch()

    @on(Input.Changed, ".field Input")
    def _field_changed(self, event: Input.Changed) -> None:
        wid = event.input.id or ""
        if not wid.startswith("f-"):
            return
        key = wid[2:]
        if event.value == self._shown.get(key):
            if self.overrides.pop(key, None) is None:
                return  # the render filling the form in: nothing to do
        else:
            self.overrides[key] = event.value
        event.input.set_class(key in self.overrides, "-override")
        self._schedule()

    def action_reset(self) -> None:
        self.overrides.clear()
        for inp in self.query(".field Input"):
            inp.set_class(False, "-override")
        self._schedule(0)

    def set_args(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.overrides.items()]

    def profile(self) -> str:
        return str(self.query_one("#profile", Select).value)

    def set_message(self, text: str, style: str = "") -> None:
        self.query_one("#cfg-status", Static).update(Text(text, style=style))

    # -- rendering off the UI thread -----------------------------------------------------
    def _schedule(self, delay: float = DEBOUNCE_S) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self._start_render) if delay else None
        if not delay:
            self._start_render()

    def _model_dir(self) -> Path | None:
        return model_dir(self.workspace)

    def _start_render(self) -> None:
        self._timer = None
        self._token += 1
        self._estimated_gpus = self.launch_choice()[0] or 1
        request = Request(
            self._token,
            self._base,
            self.profile(),
            self._model_dir(),
            dataset_path(self.workspace),  # the one the Data step / `data generate` recorded
            self.set_args(),
            self._estimated_gpus,
        )
        # Latest wins, one worker: the form's newest request replaces a waiting one, and the
        # running worker renders it next. (An exclusive worker per request once lost the
        # newest render now and then: the pane kept an old diff until the form changed.)
        with self._render_lock:
            self._wanted = request
            if self._rendering:
                return
            self._rendering = True
        self._render_config()

    def _next_request(self) -> Request | None:
        with self._render_lock:
            request, self._wanted = self._wanted, None
            if request is None:
                self._rendering = False  # under the lock: a new request starts a new worker
            return request

    @work(thread=True, exit_on_error=False, group="config-render")
    def _render_config(self) -> None:
        try:
            while (req := self._next_request()) is not None:
                self.app.call_from_thread(self._show_result, self._render_request(req))
        except BaseException:
            with self._render_lock:
                self._rendering = False  # what it raised goes to the app's one handler
            raise

    def _render_request(self, req: Request) -> Result:
        result = Result(req.token)
        try:
            if req.model is None:
                raise WizardError(
                    "no model chosen yet",
                    fix="start the wizard with --model PATH (or MODEL=demo), or pick one in Environment",
                )
            if self._hardware is None:
                self._hardware = detect_hardware()
            rendered = render_config(
                model_path=str(req.model),
                data_path=str(req.data),
                profile=req.profile,
                base=req.base,
                set_args=req.set_args,
                hardware=self._hardware,
            )
            result.rendered = rendered
            result.diff = diff_text(rendered)
            result.estimate, result.warnings = self._estimate(rendered, req.data, req.gpus)
        except WizardError as exc:
            result.error = str(exc)
        return result

    def _estimate(
        self, r: RenderedConfig, data: Path, gpus: int = 1
    ) -> tuple[list[str], list[str]]:
        hw = r.hardware or Hardware()
        lines = [f"{hw.describe()}  ·  profile {r.profile}"]
        lines += [n.split(": ", 1)[-1] if n.startswith(r.profile) else n for n in r.notes]
        run = estimate_for(r, data, gpus=gpus)
        if run is None:
            return lines, []
        if run.memory is not None and run.gpu_gib:
            lines.append(
                f"memory per GPU: ~{run.memory.total:.1f} of {run.gpu_gib:.0f} GiB "
                f"(weights {run.memory.weights:.1f}, adapter+optimizer {run.memory.trainable:.1f}, "
                f"activations {run.memory.activations:.1f})"
            )
        if run.iters_per_epoch is None:
            lines.append("iterations: write the dataset first (Data step)")
        else:
            lines.append(
                f"{run.iters_per_epoch} iter/epoch, {run.total_iters} in all"
                + (f", ~{format_duration(run.seconds)}" if run.seconds else "")
            )
        return lines, run.warnings

    def _show_result(self, result: Result) -> None:
        if result.token != self._token:
            return  # the form changed since: a newer render is on its way
        self.last_result = result
        self._default_gpus()
        diff = self.query_one("#cfg-diff", Static)
        estimate = self.query_one("#cfg-estimate", Static)
        edits = self.query_one("#cfg-edits", Static)
        brief = self.query_one("#cfg-brief", Static)
        if result.error or result.rendered is None:
            diff.update(Text(""))
            edits.update(Text(result.error, style="bold red"))
            brief.update(Text(""))
            estimate.update(Text(result.error, style="bold red"))
            return
        text = Text("\n".join(result.estimate))
        for warning in result.warnings:
            text.append("\n" + warning, style="bold red")
        estimate.update(text)
        brief.update(
            Text.assemble(
                result.estimate[-1] if result.estimate else "",
                *[("\n" + w, "bold red") for w in result.warnings],
            )
        )
        edits.update(edited_lines(result.diff, self.workspace.root))
        diff.update(colour_diff(result.diff))
        self._fill_form(result.rendered.settings)
        if not self._opened_on_file:
            # the form opens on what the workspace holds: a config written before (by the
            # wizard, `xtuner-wizard config --set ...` or by hand) puts its settings in it
            self._opened_on_file = True
            target = self._target()
            if target.is_file():
                self.reread(target)

    def _fill_form(self, settings: dict[str, Any]) -> None:
        for key in FORM_KEYS:
            value = show_value(settings.get(key))
            self._shown[key] = value
            if key in self.overrides:
                continue
            inp = self.query_one(f"#f-{key}", Input)
            if inp.value != value:
                inp.value = value

    def _target(self) -> Path:
        return self.workspace.root / f"{self._base}_copy.py"

    def _show_file_state(self) -> None:
        target = self._target()
        if target.exists() and self.workspace.is_hand_edited(target):
            self.set_message(
                f"{target.name} was edited by hand: training uses it; ctrl+s asks before replacing it"
            )

    # -- writing and editing -----------------------------------------------------------
    def action_write(self) -> None:
        result = self.last_result
        if result is None or result.rendered is None:
            self.set_message("Nothing to write yet: " + (result.error if result else "rendering"))
            return
        target = self._target()
        if self.workspace.is_hand_edited(target):

            def answered(replace: bool | None) -> None:
                if replace:
                    self._write_config(result.rendered, True)
                else:
                    self.set_message(f"Kept {target.name} as it is: nothing written.")

            self.app.push_screen(ConfirmReplace(target.name), answered)
            return
        self._write_config(result.rendered, False)

    def _write_config(self, rendered: RenderedConfig | None, force: bool) -> None:
        if rendered is None:
            return
        ws = self.workspace
        try:
            before = set(ws.backups_dir.glob("*")) if ws.backups_dir.exists() else set()
            path = write_config(ws, rendered, force=force)
        except (WizardError, OSError) as exc:
            self.set_message(f"Not written: {exc}", "bold red")
            return
        ws.set_choice("profile", rendered.profile)
        ws.set_choice("config_base", rendered.base_name)
        self._store_launch(always=True)
        backups = sorted(set(ws.backups_dir.glob("*")) - before) if ws.backups_dir.exists() else []
        text = f"Wrote {ws.rel(path)} (profile {rendered.profile})"
        if backups:
            text += f"; your version is kept as {ws.rel(backups[0])}"
        self.set_message(text + ". Next: ] Train.")
        self.mark_done()

    def action_edit(self) -> None:
        target = self._target()
        if not target.exists():
            result = self.last_result
            if result is None or result.rendered is None:
                self.set_message("Write the config first (ctrl+s).")
                return
            self._write_config(result.rendered, False)
            if not target.exists():
                return
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        try:
            with self.app.suspend():
                subprocess.run([*shlex.split(editor), str(target)], check=False)
        except Exception as exc:  # noqa: BLE001 - no terminal to hand over (tests, web)
            self.set_message(f"Cannot open an editor here: {exc}", "bold red")
            return
        self.reread(target)

    def reread(self, target: Path) -> None:
        """After a hand edit: show the file's own diff and settings; the form follows it."""
        try:
            text = target.read_text(encoding="utf-8")
            settings = settings_of_text(text, target.name)
        except (OSError, WizardError) as exc:
            self.set_message(f"Re-read {target.name}: {exc}", "bold red")
            return
        from engine.config import builtin_path

        base_text = builtin_path(self._base).read_text(encoding="utf-8")
        diff = unified_diff(base_text, text, f"a/{self._base}.py", f"b/{target.name}")
        self.query_one("#cfg-edits", Static).update(edited_lines(diff, self.workspace.root))
        self.query_one("#cfg-diff", Static).update(colour_diff(diff))
        rendered = self.last_result.rendered if self.last_result else None
        shown = rendered.settings if rendered else {}
        self.overrides = {
            key: show_value(settings.get(key))
            for key in FORM_KEYS
            if key in settings and show_value(settings.get(key)) != show_value(shown.get(key))
        }
        for key in FORM_KEYS:
            inp = self.query_one(f"#f-{key}", Input)
            inp.value = show_value(settings.get(key))
            inp.set_class(key in self.overrides, "-override")
        edited = self.workspace.is_hand_edited(target)
        self.set_message(
            f"Re-read {target.name}"
            + (
                ": edited by hand; training uses it, ctrl+s asks before replacing it"
                if edited
                else ""
            )
        )
