"""The Environment step: the checks (status, detail, fix), re-run on a key; the demo model.

The checks run in a thread worker (the torch/CUDA probe is a child process, so this process
never imports torch); each check appears as soon as it is known. With the workspace's model
choice "demo" (or none), key b builds the demo model in another worker. A model folder that
brings Python shows it (files, hash) as a warning until key t confirms it (once per hash,
``engine.trust``); nothing in the wizard runs that code before.
"""

from __future__ import annotations

import subprocess
import threading
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import ProgressBar, Static

from tui.step import StepPane

if TYPE_CHECKING:
    from engine.envcheck import Check

GLYPHS = {"ok": "✓", "warn": "!", "fail": "✗"}
STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red"}

INTRO = "✗ stops training, ! is worth knowing; both come first."
ORDER = {"fail": 0, "warn": 1, "ok": 2}


def _rank(c: Check) -> tuple[int, bool]:
    """Failed, warned, passed; unconfirmed remote code first among the warnings (key t)."""
    return ORDER.get(c.status, 3), c.status != "ok" and c.name != "remote code"


def checks_table(checks: list[Check]) -> Table:
    """Failed and warned checks first, each with its detail and fix wrapped (nothing cut);
    then one line per passed check, cut with an ellipsis at the width."""
    table = Table.grid(expand=True)
    table.add_column(width=2, no_wrap=True)
    table.add_column(ratio=1)
    for c in sorted(checks, key=_rank):
        glyph = Text(GLYPHS.get(c.status, "?"), style=STYLES.get(c.status, ""))
        if c.status == "ok":
            line = Text.assemble((c.name, "bold"), "  ", (c.detail, "dim"))
            line.no_wrap, line.overflow = True, "ellipsis"
        else:
            line = Text.assemble((c.name, STYLES[c.status]), ": ", c.detail)
            if c.fix:
                line.append("\nfix: ", style="bold cyan")
                line.append(c.fix, style="cyan")
        table.add_row(glyph, line)
    return table


class EnvironmentPane(StepPane):
    step_id = "environment"
    title = "Environment"
    WHAT = (
        "Checks this machine (Python, packages, torch and CUDA, GPUs, RAM, disk), the model "
        "folder and the dataset. A ✗ stops training until fixed; a ! is worth knowing. With no "
        "model chosen, b builds the tiny demo model that trains on a CPU in minutes. A model "
        "folder's own Python (remote code) runs only once t confirms it, named by its files and "
        "hash; changed files ask again."
    )
    NEXT = "Once no check fails: ] opens Data, where you write the identity dataset."
    MAIN = "#env-scroll"

    # Run the checks the first time the step is shown (tests that feed recorded checks turn
    # this off to stay deterministic).
    AUTO_CHECK: ClassVar[bool] = True
    # Probe torch/CUDA/bitsandbytes in a child process (seconds; off only in tests).
    PROBE: ClassVar[bool] = True

    BINDINGS = [
        Binding("r", "recheck", "Re-check"),
        Binding("b", "build_demo", "Demo model"),
        Binding("m", "pick_model", "Model"),
        Binding("t", "trust_code", "Trust code"),  # shown while a folder's code is unconfirmed
    ]

    DEFAULT_CSS = """
    EnvironmentPane #env-intro { height: 1; color: $text-muted; text-wrap: nowrap;
        text-overflow: ellipsis; }
    EnvironmentPane #env-scroll { height: 1fr; }
    EnvironmentPane #env-table { height: auto; }
    EnvironmentPane #env-summary { height: auto; }
    EnvironmentPane #env-demo { height: auto; display: none; }
    EnvironmentPane #env-demo.busy { display: block; }
    EnvironmentPane #env-progress { display: none; }
    EnvironmentPane #env-progress.busy { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._checks: list[Check] = []
        self._generation = 0  # results of an older run (re-check pressed again) are dropped
        self._checking = False
        self._building = False
        self._started = False
        self._cancel = threading.Event()  # set on unmount: stops the probe child process
        self._demo_proc: subprocess.Popen | None = None

    def compose(self) -> ComposeResult:
        yield Static(INTRO, id="env-intro")
        yield Static("", id="env-summary")
        yield Static("", id="env-demo")
        yield ProgressBar(total=4, show_eta=False, show_percentage=False, id="env-progress")
        # sections (e.g. a model picker) go above or below the checks, each its own widget
        with VerticalScroll(id="env-scroll"):
            yield Static("", id="env-table")

    # -- the app's hooks ---------------------------------------------------------------
    def on_step_shown(self) -> None:
        if not self._started and self.AUTO_CHECK:
            self._started = True
            # After the first paint: the worker thread must not compete with it for the GIL.
            self.call_after_refresh(self._auto_start)

    def _auto_start(self) -> None:
        if self._generation == 0:  # nothing (recorded checks, r) started a run meanwhile
            self.start_checks()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "build_demo":
            return self.uses_demo_model()
        if action == "trust_code":
            return self.needs_trust()
        return True

    def on_unmount(self) -> None:
        # Quitting mid-check or mid-build: end the children so no thread outlives the app.
        self._cancel.set()
        proc = self._demo_proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def _to_ui(self, fn, *args) -> None:
        """From a worker thread: run ``fn`` on the UI thread, unless the app is closing."""
        try:
            self.app.call_from_thread(self._if_mounted, fn, *args)
        except Exception:  # the app stopped while the worker was still running
            pass

    def _if_mounted(self, fn, *args) -> None:
        if self.is_mounted and self.is_attached:
            fn(*args)

    # -- model choice ------------------------------------------------------------------
    def action_pick_model(self) -> None:
        """The model picker (tui/widgets/model_picker.py) over this step; a choice re-checks."""
        from tui.widgets.model_picker import ModelPickerScreen

        def chosen(path) -> None:
            if path is not None:
                self.workspace.set_choice("model", str(path))
                self.start_checks()

        self.app.push_screen(ModelPickerScreen(self.workspace), chosen)

    def uses_demo_model(self) -> bool:
        from engine.demo import demo_arch

        choice = self.workspace.load_state().choices.get("model")
        return choice in (None, "") or demo_arch(choice) is not None

    def _demo_arch(self) -> str:
        from engine.demo import demo_arch

        return demo_arch(self.workspace.load_state().choices.get("model")) or "internlm2"

    # -- remote code -------------------------------------------------------------------
    def needs_trust(self) -> bool:
        """A check says the model folder's code is not confirmed (a warning, not a failure)."""
        return any(c.name == "remote code" and c.status == "warn" for c in self._checks)

    def action_trust_code(self) -> None:
        """Name the folder's code (files, hash) in a dialog; yes records it by its hash."""
        from engine.envcheck import model_dir_of
        from engine.trust import untrusted_code
        from tui.widgets.confirm import ConfirmTrust

        folder, _ = model_dir_of(self.workspace, None)
        code = untrusted_code(self.workspace, folder) if folder is not None else None
        if code is None:
            self.app.notify("The model folder brings no code to confirm.")
            self.start_checks()
            return

        def answered(yes: bool | None) -> None:
            from engine.errors import WizardError
            from engine.trust import trust

            if not yes:
                self.app.notify("Not trusted: nothing runs that code.", severity="warning")
                return
            try:
                trust(self.workspace, folder, expected=code.digest)
            except WizardError as exc:  # changed while the dialog was open: ask again
                self.app.notify(str(exc), severity="error")
            else:
                self.app.notify(f"Trusted {code.describe()}.")
            self.start_checks()

        self.app.push_screen(ConfirmTrust(str(folder), code.files, code.digest), answered)

    # -- checks ------------------------------------------------------------------------
    def action_recheck(self) -> None:
        self.start_checks(fresh=True)

    def start_checks(self, *, fresh: bool = False) -> None:
        """Run the checks; ``fresh`` re-probes torch/CUDA even if probed minutes ago."""
        self._generation += 1
        self._checks = []
        self._checking = True
        self._render_checks()
        self._run_checks(self._generation, fresh)

    @work(thread=True, exclusive=True, exit_on_error=False, group="envcheck")
    def _run_checks(self, generation: int, fresh: bool) -> None:
        from engine.envcheck import Check, run_checks

        def arrived(check: Check) -> None:
            self._to_ui(self._add_check, generation, check)

        try:
            checks = run_checks(
                self.workspace,
                probe=self.PROBE,
                on_check=arrived,
                cancel=self._cancel,
                fresh_probe=fresh,
            )
        except Exception as exc:  # a probe's bug: show it as a failed check, not a crash
            checks = [Check("checks", "fail", f"the checks crashed: {exc}", "report this bug")]
            self._to_ui(self._add_check, generation, checks[0])
        self._to_ui(self._finish_checks, generation, checks)

    def _add_check(self, generation: int, check: Check) -> None:
        if generation != self._generation:
            return
        self._checks.append(check)
        self._render_checks()

    def _finish_checks(self, generation: int, checks: list[Check]) -> None:
        if generation != self._generation:
            return
        self.show_checks(checks, generation=generation)

    def show_checks(self, checks: list[Check], *, generation: int | None = None) -> None:
        """Show a finished list of checks (from a run, or recorded), and mark the step."""
        from engine.envcheck import can_train

        if generation is None:  # fed from outside: drop whatever a running worker sends
            self._generation += 1
            self._started = True
        self._checks = list(checks)
        self._checking = False
        self._render_checks()
        ok = can_train(self._checks)
        self.mark_done(ok)
        self.refresh_bindings()

    @property
    def checks(self) -> list[Check]:
        return list(self._checks)

    def _render_checks(self) -> None:
        from engine.envcheck import can_train

        self.query_one("#env-table", Static).update(checks_table(self._checks))
        summary = self.query_one("#env-summary", Static)
        if self._checking:
            summary.update(Text(f"Checking… ({len(self._checks)} so far)", style="italic"))
            return
        if not self._checks:
            summary.update("Press r to run the checks.")
            return
        fails = sum(c.status == "fail" for c in self._checks)
        warns = sum(c.status == "warn" for c in self._checks)
        counts = f"{len(self._checks)} checks: {fails} failed, {warns} warnings."
        if can_train(self._checks):
            text = Text(f"✓ Training can go ahead. {counts} ", style="green")
            text.append("Next: ] opens the Data step.", style="")
        else:
            text = Text(f"✗ Training cannot go ahead: fix the ✗ lines. {counts}", "bold red")
        summary.update(text)

    # -- demo model --------------------------------------------------------------------
    def action_build_demo(self) -> None:
        if self._building or not self.uses_demo_model():
            return
        self._building = True
        self._set_demo_status("Building the demo model…", busy=True)
        self._build_demo()

    @work(thread=True, exclusive=True, exit_on_error=False, group="demo-model")
    def _build_demo(self) -> None:
        """Build in a child process (``xtuner-wizard demo-model --progress``): importing torch
        here would hold the GIL for seconds and freeze the screen."""
        from engine.cli.demo import command, parse_progress
        from engine.xtuner_env import child_env

        tail: list[str] = []
        try:
            proc = subprocess.Popen(
                command(self.workspace.root, arch=self._demo_arch()),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=child_env(),
                start_new_session=True,
            )
        except OSError as exc:
            self._to_ui(self._demo_done, None, exc.strerror or str(exc))
            return
        self._demo_proc = proc
        assert proc.stdout is not None
        for line in proc.stdout:
            parsed = parse_progress(line)
            if parsed is not None:
                self._to_ui(self._demo_progress, *parsed)
            elif line.strip():
                tail = [*tail[-4:], line.strip()]
        code = proc.wait()
        if code == 0:
            from engine.demo import demo_dir

            self._to_ui(self._demo_done, str(demo_dir(self.workspace, self._demo_arch())), None)
        else:
            why = tail[-1] if tail else f"exit code {code}"
            self._to_ui(self._demo_done, None, why)

    def _demo_progress(self, stage: int, stages: int, message: str) -> None:
        bar = self.query_one("#env-progress", ProgressBar)
        bar.update(total=stages, progress=stage)
        self._set_demo_status(f"Building the demo model: {message} ({stage}/{stages})", busy=True)

    def _demo_done(self, path: str | None, error: str | None) -> None:
        self._building = False
        if error:
            self._set_demo_status(f"✗ The demo model was not built: {error}", busy=False)
            self.query_one("#env-demo", Static).add_class("busy")
            return
        if self.workspace.load_state().choices.get("model") in (None, ""):
            self.workspace.set_choice("model", "demo")
        self._set_demo_status(f"✓ Demo model ready: {self.workspace.rel(path)}", busy=False)
        self.query_one("#env-demo", Static).add_class("busy")
        self.start_checks()

    def _set_demo_status(self, text: str, *, busy: bool) -> None:
        demo = self.query_one("#env-demo", Static)
        demo.update(text)
        demo.set_class(busy, "busy")
        self.query_one("#env-progress", ProgressBar).set_class(busy, "busy")
