"""The Train step: start, follow, stop and resume a training run; cheap on a slow SSH link.

The pane never talks to the trainer. The run is a detached process (engine.runs.launch) that
writes files; a worker thread follows it as `attach` and run-all do (engine.runs.follow) and
reads the GPUs (NVML) and the run's processes (psutil) about once a second, and posts one
coalescing :class:`TrainTick` (a newer tick replaces one still queued). The handler updates
only what changed; every live value sits in a widget that repaints only its changed characters,
and the loss chart only appends columns. On a slow link the counters follow every poll and the
chart, the answers and the log every SLOW_EVERY-th one while the run trains, with a repeated log
message (a checkpoint saved every N iterations) updated in place. Quitting the wizard leaves
the run training; opening the step again re-attaches to it; p shows any earlier run of the
workspace.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.style import Style
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from tui.format import without_tokens
from tui.step import StepPane
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.live_lines import LiveLines
from tui.widgets.loss_chart import LossChart

POLL_S = 1.0  # how often the worker reads the run's files and the GPUs
POLL_S_LOW_BANDWIDTH = 2.0  # on a slow link: 0.5 Hz
HOST_EVERY = 5  # CPU/RAM every HOST_EVERY polls (they flicker and cost bytes)
# On a slow link the chart, the answers and the log follow every SLOW_EVERY-th poll while a run
# trains (6 s), the counters every poll: each repainted row costs ~35 bytes of cursor move and
# colour codes before its text, so fewer, larger updates of the slow parts cost less.
SLOW_EVERY = 3
EVAL_LINES = 6  # the latest evaluation's answers: at most this many lines
EVAL_LINES_SHORT = 3  # ... below 34 rows
LOG_LINES = 4  # bounded log tail (iteration lines are drawn by the chart and metrics)


# -- formatting (pure functions, unit-tested) ------------------------------------------------
def hms(seconds: float | int | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _log_seconds(stamp: str | None) -> float | None:
    """``YYYY/MM/DD HH:MM:SS`` (mmengine's log time) -> seconds since the epoch (local time)."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return time.mktime(time.strptime(stamp, "%Y/%m/%d %H:%M:%S"))
    except ValueError:
        return None


now = time.time  # the clock (tests freeze it)


def elapsed_seconds(snap: Any, record: Any = None) -> float | None:
    """Since the run started, by the clock while it runs (it moves while the trainer loads,
    before any log line), to its end once it ended; without a record, from the first to the
    latest log line."""
    started = getattr(record, "started", None)
    if isinstance(started, (int, float)):
        ended = getattr(record, "ended", None)
        if isinstance(ended, (int, float)):
            return max(0.0, ended - started)
        if getattr(record, "active", False):
            return max(0.0, now() - started)
    start, last = _log_seconds(snap.started_at), _log_seconds(snap.last_log_at)
    if start is None or last is None:
        return None
    return max(0.0, last - start)


def progress_line(snap: Any, record: Any = None) -> str:
    """``iter 48/96 (50%) · epoch 1/3 · elapsed 0:00:12 · ETA 0:00:07`` (counters first: the
    left edge of a changed line is what a partial repaint resends)."""
    return " · ".join([counters_line(snap), time_line(snap, record)])


def counters_line(snap: Any) -> str:
    """``iter 48/96 (50%) · epoch 1/3``."""
    total = snap.max_iters
    it = snap.iteration or 0
    parts = []
    if total:
        parts.append(f"iter {it}/{total} ({100 * it // max(1, total)}%)")
    else:
        parts.append(f"iter {it}")
    if snap.epoch is not None and snap.max_epochs:
        parts.append(f"epoch {snap.epoch}/{snap.max_epochs}")
    return " · ".join(parts)


def time_line(snap: Any, record: Any = None) -> str:
    """``elapsed 0:00:12 · ETA 0:00:07``; before the first iteration, what the trainer is
    doing (engine.runs.phases: loading the model, preparing the dataset, ...)."""
    parts = [f"elapsed {hms(elapsed_seconds(snap, record))}"]
    if snap.phase == "starting" and not snap.losses and getattr(record, "active", True):
        from engine.runs.phases import startup_phase

        parts.append(startup_phase(snap.log_tail).text)
    elif snap.phase in ("training", "evaluating", "saving", "starting"):
        parts.append(f"ETA {hms(snap.eta_seconds)}")
    return " · ".join(parts)


def _num(value: float | None, fmt: str) -> str:
    return "N/A" if value is None else format(value, fmt)


def metrics_lines(snap: Any) -> list[str]:
    """``loss 0.0423 · lr 1.07e-03 · grad_norm 0.146`` and ``0.107 s/it · tokens/s N/A``: two
    short lines (they fit 80 columns; each resends only up to its last changed character)."""
    first = " · ".join(
        [
            f"loss {_num(snap.last_loss, '.4f')}",
            f"lr {_num(snap.lr, '.2e')}",
            f"grad_norm {_num(snap.grad_norm, '.3f')}",
        ]
    )
    # tokens/s only when honest (packed samples): the monitor leaves it None otherwise
    second = [f"{_num(snap.iter_time, '.3f')} s/it", f"tokens/s {_num(snap.tokens_per_s, '.0f')}"]
    if snap.memory_mb is not None:
        second.append(f"GPU memory {snap.memory_mb / 1024:.1f} GB")
    return [first, " · ".join(second)]


# iteration lines (the chart and the metrics) and evaluation lines (the answers) are shown above
# (the kinds of engine.runs.logparse, the one reader of mmengine's lines)
_SHOWN_ELSEWHERE = ("iter", "sample", "eval_start")
_PROBLEM = re.compile(r"(Error|Traceback|Killed|out of memory|No space left)", re.IGNORECASE)


_DIGITS = re.compile(r"\d+")


def visible_log_lines(
    tail: list[str], limit: int = LOG_LINES, *, collapse_repeats: bool = False
) -> list[str]:
    """The log tail worth a look: mmengine's messages and anything that looks like an error.
    Iteration and evaluation lines (drawn above), config dumps and progress bars are left out:
    each new line scrolls the whole tail, so only news belongs there.

    ``collapse_repeats`` (the slow link): a message that differs from an earlier one only in
    its numbers ("Saving checkpoint at 64 iterations", then at 96) replaces it, so a fast run's
    every-N-iterations messages change one line in place instead of scrolling the tail."""
    from engine.runs.logparse import parse_log_line

    keep: list[tuple[str, str]] = []  # (kind of message, the line shown)
    for line in tail:
        rec = parse_log_line(line)
        if rec is not None:
            if rec["kind"] not in _SHOWN_ELSEWHERE:
                clock = rec["logged_at"].rsplit(" ", 1)[-1]  # HH:MM:SS, without the date
                kind = f"{rec['level']} {_DIGITS.sub('#', rec['message'])}"
                keep.append((kind, f"{clock} {rec['level']} {rec['message']}"))
        elif _PROBLEM.search(line):
            keep.append((_DIGITS.sub("#", line.strip()), line.strip()))
    if collapse_repeats:
        latest = {kind: n for n, (kind, _) in enumerate(keep)}
        keep = [item for n, item in enumerate(keep) if latest[item[0]] == n]
    return [text for _, text in keep[-limit:]]


def last_round(samples: list[Any]) -> list[Any]:
    """The samples of the latest evaluation (one per evaluation input)."""
    if not samples:
        return []
    key = (samples[-1].iteration, getattr(samples[-1], "hook_point", ""))
    out = []
    for sample in reversed(samples):
        if (sample.iteration, getattr(sample, "hook_point", "")) != key:
            break
        out.append(sample)
    return out[::-1]


def eval_title(samples: list[Any]) -> str:
    if not samples:
        return "answers: none yet (evaluated before training, every evaluation_freq, and after)"
    last = samples[-1]
    if last.iteration == 0:  # an untrained (or randomly initialised demo) model: noise
        return "answers before training: noise is expected until it has trained"
    if getattr(last, "hook_point", "") == "after_train":
        where = f"after training, iter {last.iteration}"
    else:
        where = f"iter {last.iteration}"
    rounds = len({(s.iteration, getattr(s, "hook_point", "")) for s in samples})
    return f"answers {where} (evaluation {rounds})"


def eval_body(samples: list[Any], limit: int = EVAL_LINES) -> str:
    """The latest evaluation's answers, at most ``limit`` lines (each sample's last lines)."""
    shown = last_round(samples)
    if not shown:
        return ""
    per = max(1, limit // len(shown))
    lines: list[str] = []
    for sample in shown:
        text = without_tokens(sample.text).splitlines()
        lines.extend(text[-per:])
    return "\n".join(lines[-limit:])


def wrap_cells(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` terminal cells (CJK characters take two)."""
    from rich.cells import cell_len

    out: list[str] = []
    for line in text.splitlines():
        current, used = "", 0
        for ch in line:
            w = cell_len(ch)
            if used + w > width and current:
                out.append(current)
                current, used = "", 0
            current += ch
            used += w
        out.append(current)
    return out


def eval_lines(samples: list[Any], width: int, limit: int = EVAL_LINES) -> list[str]:
    """:func:`eval_body` wrapped to ``width`` and padded to exactly ``limit`` lines (a fixed
    height: a new answer repaints only the lines that changed, never the layout)."""
    lines = wrap_cells(eval_body(samples, limit), max(10, width))[-limit:]
    return lines + [""] * (limit - len(lines))


# -- messages and data ------------------------------------------------------------------------
@dataclass
class TrainTick:
    """What the worker read in one poll."""

    record: Any = None  # engine.runs.records.RunRecord or None (no run yet)
    snapshot: Any = None  # engine.runs.monitor.RunSnapshot or None
    gpus: list[Any] = field(default_factory=list)
    host: tuple[float | None, float | None, float | None] | None = None  # cpu %, RAM used/total GB
    error: str | None = None


class TickMessage(Message):
    """A poll's result; a newer one replaces one still waiting in the queue."""

    def __init__(self, tick: TrainTick) -> None:
        super().__init__()
        self.tick = tick

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TickMessage)


class ConfirmStop(ModalScreen[bool]):
    """Stop the run? No checkpoint is written on interrupt."""

    DEFAULT_CSS = """
    ConfirmStop { align: center middle; }
    ConfirmStop > Vertical {
        width: 60; height: auto; border: heavy $error; background: $surface; padding: 1 2;
    }
    ConfirmStop Horizontal { height: auto; margin-top: 1; }
    ConfirmStop Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("n,escape", "answer(False)", "Keep training"),
    ]

    def __init__(self, run_id: str, checkpoint: str | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.checkpoint = checkpoint

    def compose(self) -> ComposeResult:
        since = (
            f"The last checkpoint is {self.checkpoint}."
            if self.checkpoint
            else "No checkpoint has been written yet."
        )
        with Vertical():
            yield Label(f"Stop run {self.run_id}?")
            yield Static(
                f"No checkpoint is written on stop: work since the last one is lost. {since}"
            )
            with Horizontal():
                yield Button("Stop it (y)", id="confirm-stop", variant="error")
                yield Button("Keep training (n)", id="cancel-stop")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed, "#confirm-stop")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel-stop")
    def _no(self) -> None:
        self.dismiss(False)


class ConfirmNewRun(ConfirmStop):
    """Start a new run while a finished one is shown? The old one stays in the history."""

    BINDINGS = [
        Binding("y", "answer(True)", "Start a new run"),
        Binding("n,escape", "answer(False)", "Keep looking"),
    ]

    def __init__(self, run_id: str, state: str) -> None:
        super().__init__(run_id, None)
        self.state = state

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Start a new training run?")
            yield Static(
                f"Run {self.run_id} ({self.state}) stays as it is, in its own folder "
                f"work_dirs/{self.run_id}/: Merge and Chat can still pick it; "
                "`xtuner-wizard runs` lists every run."
            )
            with Horizontal():
                yield Button("Start (y)", id="confirm-stop", variant="primary")
                yield Button("Keep looking (n)", id="cancel-stop")


class PickRun(ModalScreen[str | None]):
    """The workspace's runs (id, state, iterations): the one picked is shown."""

    DEFAULT_CSS = """
    PickRun { align: center middle; }
    PickRun > Vertical {
        width: 64; max-width: 100%; height: auto; max-height: 100%;
        border: heavy $primary; background: $surface; padding: 0 1;
    }
    PickRun OptionList { height: auto; max-height: 14; border: none; padding: 0; }
    PickRun #pick-run-keys { color: $text-muted; }
    """
    BINDINGS = [Binding("escape,p", "close", "Back")]

    def __init__(self, rows: list[tuple[str, str]], shown: str | None) -> None:
        super().__init__()
        self.rows = rows  # (run id, its line)
        self.shown = shown

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Show which run? Its curve, answers and log.")
            yield OptionList(*(Option(text, id=run_id) for run_id, text in self.rows))
            yield Static("enter shows it · esc goes back", id="pick-run-keys")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [run_id for run_id, _ in self.rows]
        if self.shown in ids:
            options.highlighted = ids.index(self.shown)
        options.focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)


def run_rows(runs: list[Any], shown: Any = None, snap: Any = None) -> list[tuple[str, str]]:
    """``(id, "20261129-023742  succeeded  40/40 iterations")`` for each run, newest first;
    the shown run's iterations from its snapshot (a running run's record has none yet)."""
    rows = []
    for run in reversed(runs):
        it, total = run.iteration, run.max_iters
        if shown is not None and snap is not None and run.id == shown.id:
            it, total = snap.iteration or it, snap.max_iters or total
        iters = f"{it or 0}/{total} iterations" if total else f"{it or 0} iterations"
        rows.append((run.id, f"{run.id}  {run.state:<9}  {iters}"))
    return rows


class PlainLines(LiveLines):
    """LiveLines whose blank cells carry the background alone, as a Static's do: the answers'
    title and the log look exactly as they did as Statics, and a change repaints only its span
    (a Static repaints its whole region, trailing blanks and all)."""

    def pad_style(self, base: Style) -> Style:
        return Style(bgcolor=base.bgcolor)


class TrainPane(StepPane):
    step_id = "train"
    title = "Train"
    WHAT = (
        "Starts the config as a detached run (it goes on when the wizard quits) and follows "
        "it: what the trainer does while it starts, iterations, elapsed time and ETA, loss, "
        "the evaluation answers, the log. x stops it (no checkpoint is written on stop); r "
        "resumes from its last checkpoint; p shows any earlier run of the workspace."
    )
    NEXT = "Once it succeeded: ] opens Merge, which turns the checkpoint into a model."
    MAIN = "#train-start"

    # No borders: a box-drawing cell is 3 bytes and every full paint re-sends them all.
    # 80x24 first (22 rows): status, times, metrics, a 5-row chart, 3 answer and 3 log lines;
    # from 34 rows the chart takes what is left, answers and log get more lines, and the
    # buttons and the note appear (the screen's -tall class: these rules are not scoped).
    SCOPED_CSS = False
    DEFAULT_CSS = """
    TrainPane #train-head { height: 1; text-style: bold; }
    TrainPane #train-progress, TrainPane #train-time { height: 1; }
    TrainPane #train-metrics { height: 2; }
    TrainPane .train-title { height: 1; color: $text-muted; text-style: bold;
        text-wrap: nowrap; text-overflow: ellipsis; }
    TrainPane LossChart { height: 1fr; min-height: 4; }
    TrainPane #train-gpus { height: auto; }
    TrainPane #train-eval-text { height: 3; }
    TrainPane #train-log { height: 3; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainPane #train-diagnosis { height: auto; color: $error; text-style: bold; display: none; }
    TrainPane #train-diagnosis.shown { display: block; }
    TrainPane #train-controls { height: 1; display: none; }
    TrainPane #train-controls Button { margin-right: 2; }
    TrainPane #train-command { height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainPane #train-note { height: auto; color: $text-muted; display: none; }
    Screen.-tall TrainPane #train-eval-text { height: 6; }
    Screen.-tall TrainPane #train-log { height: 4; }
    Screen.-tall TrainPane #train-controls { display: block; margin-top: 1; }
    Screen.-tall TrainPane #train-command { height: auto; text-wrap: wrap; }
    Screen.-tall TrainPane #train-note { display: block; }
    """

    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("p", "pick_run", "Runs"),  # the list of runs: 80 columns hold "Runs"
    ]

    def __init__(self) -> None:
        super().__init__()
        self._record: Any = None
        self._snapshot: Any = None
        self._version: tuple[Any, ...] | None = None
        self._shown: dict[str, Any] = {}  # what each plain widget shows now (compare first)
        self._status: str | None = "unset"
        self._following: str | None = None
        self._poller: RunPoller | None = None
        self.ticks = 0  # ticks handled (tests read it)
        self._slow_at: int | None = None  # the tick the slow parts were last drawn at

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield LiveLines(["No training run yet."], id="train-head")
        yield LiveLines([""], id="train-progress")
        yield LiveLines([""], id="train-time")
        yield LiveLines(["", ""], id="train-metrics")
        yield Static("loss per iteration", classes="train-title")
        yield LossChart(id="train-chart")
        yield GpuPanel(id="train-gpus")
        yield Static("", id="train-diagnosis", markup=False)
        yield PlainLines([eval_title([])], id="train-eval-title", classes="train-title")
        yield LiveLines([""] * EVAL_LINES, id="train-eval-text")
        yield Static("log", classes="train-title")
        yield PlainLines([""] * LOG_LINES, id="train-log")
        with Horizontal(id="train-controls"):
            yield Button("Start (s)", id="train-start", variant="primary", compact=True)
            yield Button("Stop (x)", id="train-stop", variant="error", compact=True)
            yield Button("Resume (r)", id="train-resume", compact=True)
        yield Static("", id="train-command", markup=False)
        yield Static(
            "q quits the wizard; a run goes on training. Open the wizard again (or run "
            "`xtuner-wizard attach`) to follow it.",
            id="train-note",
        )

    def on_mount(self) -> None:
        self._show_command_preview()
        if self.workspace.load_state().current_step == self.step_id:
            # the wizard opens on this step: read the run now, so the first paint shows it
            self.follow()

    def on_step_shown(self) -> None:
        self._show_command_preview()
        if self._poller is None:
            self.follow()

    # -- the worker ------------------------------------------------------------------------------
    @property
    def poll_interval(self) -> float:
        low = getattr(self.app, "low_bandwidth", False)
        return POLL_S_LOW_BANDWIDTH if low else POLL_S

    def follow(self, run_id: str | None = None) -> None:
        """Show a run (default: the running one, else the latest) and keep following it.

        The first poll is done here, before the pane is painted, so the first paint already
        holds the whole history (one paint, not a blank pane and then a second one); the
        worker thread does the next ones.
        """
        self._following = run_id
        self._poller = poller = RunPoller(self.workspace, run_id)
        self._slow_at = None  # a run shown anew: draw all of it now
        self.show_tick(poller.poll())
        self._monitor_runs(poller, self.poll_interval)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-monitor")
    def _monitor_runs(self, poller: RunPoller, interval: float) -> None:
        worker = get_current_worker()
        try:
            while not worker.is_cancelled:
                deadline = time.monotonic() + interval
                while not worker.is_cancelled and time.monotonic() < deadline:
                    time.sleep(0.05)
                if worker.is_cancelled:
                    break
                self.post_message(TickMessage(poller.poll()))
        finally:
            poller.close()

    # -- rendering ---------------------------------------------------------------------------
    def on_tick_message(self, message: TickMessage) -> None:
        self.ticks += 1
        self.show_tick(message.tick)

    def show_tick(self, tick: TrainTick) -> None:
        """Draw a tick; widgets whose content did not change are not touched."""
        self._record = tick.record
        self._snapshot = snap = tick.snapshot
        host = tick.host or (None, None, None)
        self.query_one(GpuPanel).show(tick.gpus, *host)
        record = tick.record
        if record is None or snap is None:
            self._line("#train-head", "No training run yet: press s (Start) to train the config.")
            self._set_rail(None)
            return
        state = _state_of(record, snap)
        self._line("#train-head", f"{state} · run {record.id} · {Path(record.config).name}")
        self._line("#train-progress", counters_line(snap))
        done = " · done. Next: ] Merge" if state == "succeeded" else ""
        self._line("#train-time", time_line(snap, record) + done)
        self.query_one("#train-metrics", LiveLines).set_lines(metrics_lines(snap))
        if self._slow_parts_due(state):
            self._show_slow_parts(record, snap)
        self._show_diagnosis(state, record, snap)
        self._show_command(record)
        if state in ("running", "starting"):
            self._set_rail("running")
        elif state in ("failed", "killed", "lost"):
            self._set_rail("failed")
        elif state == "succeeded":
            self._set_rail(None)
            if self._shown.get("done-run") != record.id:
                self._shown["done-run"] = record.id
                self.mark_done()
        else:
            self._set_rail(None)

    def _slow_parts_due(self, state: str) -> bool:
        """Whether this tick draws the chart, the answers and the log: always locally; on a slow
        link every SLOW_EVERY-th tick while the run trains, and at once when a run is shown anew
        or its state is not a training one (it ended: the last of it shows without waiting)."""
        low = getattr(self.app, "low_bandwidth", False)
        if (
            low
            and state in ("running", "starting")
            and self._slow_at is not None
            and self.ticks - self._slow_at < SLOW_EVERY
        ):
            return False
        self._slow_at = self.ticks
        return True

    def _show_slow_parts(self, record: Any, snap: Any) -> None:
        chart = self.query_one(LossChart)
        if self._shown.get("chart-run") != record.id:
            self._shown["chart-run"] = record.id
            chart.reset(snap.max_iters or 0)
        chart.set_points(snap.losses, max_iters=snap.max_iters)
        self._line("#train-eval-title", eval_title(snap.eval_samples))
        evals = self.query_one("#train-eval-text", LiveLines)
        # before the first layout: the terminal less the rail (20) and the pane's padding (2)
        width = evals.size.width or max(20, self.app.size.width - 22)
        tall = self.screen.has_class("-tall")
        evals.set_lines(
            eval_lines(snap.eval_samples, width, EVAL_LINES if tall else EVAL_LINES_SHORT)
        )
        if getattr(self.app, "low_bandwidth", False):
            # the box's height (3 rows, 4 when tall), each kind of message once, the latest
            rows = LOG_LINES if tall else 3
            lines = visible_log_lines(snap.log_tail, rows, collapse_repeats=True)
        else:
            lines = visible_log_lines(snap.log_tail)
        self._line_block("#train-log", lines, LOG_LINES)

    def _line_block(self, selector: str, lines: list[str], rows: int) -> None:
        """A fixed count of lines (the same widget height: a change repaints only itself)."""
        self.query_one(selector, LiveLines).set_lines((lines + [""] * rows)[:rows])

    def _line(self, selector: str, text: str) -> None:
        self.query_one(selector, LiveLines).set_lines([text])

    def _static(self, selector: str, text: str, *, layout: bool = False) -> None:
        """Update a Static only when its text changed; ``layout`` only for auto-height ones
        (the others have fixed sizes: a new text repaints them and nothing around them)."""
        if self._shown.get(selector) != text:
            self._shown[selector] = text
            self.query_one(selector, Static).update(text, layout=layout)

    def _set_rail(self, status: str | None) -> None:
        if self._status != status:
            self._status = status
            self.set_status(status)

    def _show_diagnosis(self, state: str, record: Any, snap: Any) -> None:
        box = self.query_one("#train-diagnosis", Static)
        text = ""
        if state in ("failed", "killed", "lost"):
            cause = snap.cause or getattr(record, "cause", None)
            fix = snap.fix or getattr(record, "fix", None)
            if not cause:
                key = f"diagnosed:{record.id}"
                if key not in self._shown:  # read the log once, not at every tick
                    self._shown[key] = _diagnose_now(record)
                cause, fix = self._shown[key]
            text = f"Training failed: {cause or 'unknown cause'}"
            if fix:
                text += f"\nFix: {fix}"
            if _checkpoint_of(snap):
                text += "\nThen press r to resume from the last checkpoint."
        elif state == "stopped":
            text = "Stopped. Press r to resume from the last checkpoint, or s to start over."
        if self._shown.get("diagnosis") != text:
            self._shown["diagnosis"] = text
            box.update(text)
            box.set_class(bool(text), "shown")

    def _show_command(self, record: Any) -> None:
        text = f"$ {record.command}" if record is not None else ""
        self._static("#train-command", text, layout=True)

    def _show_command_preview(self) -> None:
        if self._record is not None:
            return
        config = self.workspace.load_state().choices.get("config")
        if not config:
            text = "No config chosen yet: finish the Config step first."
        else:
            text = "Start runs: $ " + _preview_command(self.workspace, config)
        self._static("#train-command", text, layout=True)

    # -- controls ----------------------------------------------------------------------------
    @on(Button.Pressed, "#train-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#train-stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    @on(Button.Pressed, "#train-resume")
    def _resume_pressed(self) -> None:
        self.action_resume()

    def action_start(self) -> None:
        config = self.workspace.load_state().choices.get("config")
        if not config:
            self.notify("No config yet: finish the Config step first.", severity="error")
            return
        shown = self._record
        if shown is not None and not shown.active:

            def answered(yes: bool | None) -> None:
                if yes:
                    self._launch(lambda ws: _start(ws, config), "Training started")

            self.app.push_screen(ConfirmNewRun(shown.id, shown.state), answered)
            return
        self._launch(lambda ws: _start(ws, config), "Training started")

    def action_resume(self) -> None:
        run_id = self._record.id if self._record is not None else None
        self._launch(lambda ws: _resume(ws, run_id), "Resumed from the last checkpoint")

    def action_pick_run(self) -> None:
        from engine.runs.control import refresh
        from engine.runs.records import list_runs

        runs = [refresh(r) for r in list_runs(self.workspace)]
        if not runs:
            self.notify("No training run yet: press s (Start) to train the config.")
            return
        shown = self._record

        def picked(run_id: str | None) -> None:
            if run_id and (shown is None or run_id != shown.id):
                self.follow(run_id)

        rows = run_rows(runs, shown, self._snapshot)
        self.app.push_screen(PickRun(rows, shown.id if shown else None), picked)

    def action_stop(self) -> None:
        record = self._record
        if record is None or not record.active:
            self.notify("No run is training.", severity="warning")
            return
        ckpt = _checkpoint_of(self._snapshot)
        rel = self.workspace.rel(ckpt) if ckpt else None

        def answered(yes: bool | None) -> None:
            if yes:
                self._stop(record.id)

        self.app.push_screen(ConfirmStop(record.id, rel), answered)

    def _launch(self, action, done_text: str) -> None:
        from engine.errors import WizardError

        try:
            record = action(self.workspace)
        except WizardError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self._record = record
        self.notify(f"{done_text}: run {record.id}.\n$ {record.command}", timeout=6)
        self.follow(record.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-stop")
    def _stop(self, run_id: str) -> None:
        from engine.errors import WizardError
        from engine.runs.control import stop_run

        self.app.call_from_thread(self.notify, f"Stopping run {run_id}...")
        try:
            stop_run(self.workspace, run_id)
        except WizardError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        self.app.call_from_thread(self.notify, f"Run {run_id} stopped.")


# -- engine calls (kept out of the class: small, and easy to read) ---------------------------
class RunPoller:
    """One poll of everything the pane shows: the run, followed as `attach` and run-all follow
    it (engine.runs.follow), plus the GPUs and the run's own CPU and memory. Used by one thread
    at a time."""

    def __init__(self, ws: Any, run_id: str | None = None) -> None:
        from engine.gpu import GpuSampler
        from engine.runs.follow import ShownRunFollower

        self.ws = ws
        self.run_id = run_id
        self.follower = ShownRunFollower(ws, run_id)
        self.sampler = GpuSampler()
        self.polls = 0
        self.host: tuple[float | None, float | None, float | None] | None = None
        self._procs: dict[int, Any] = {}

    @property
    def record(self) -> Any:
        return self.follower.record

    def poll(self) -> TrainTick:
        self.follower.poll()
        if self.polls % HOST_EVERY == 0:
            self.host = _host_sample(self.run_processes())
        self.polls += 1
        return TrainTick(
            record=self.follower.record,
            snapshot=self.follower.snapshot,
            gpus=self.sampler.sample(),
            host=self.host,
        )

    def run_processes(self, record: Any = None) -> list[Any]:
        """The active run's own processes (its supervisor, its trainer and their tree: pid,
        start time and command line as engine.runs.control proves them), kept between polls so
        that psutil's CPU percentages are over the interval."""
        record = record if record is not None else self.record
        if record is None or not getattr(record, "active", False):
            self._procs = {}
            return []
        from engine.runs.control import run_processes

        found: dict[int, Any] = {}
        for proc in run_processes(record, with_supervisor=True):
            kept = self._procs.get(proc.pid)
            found[proc.pid] = kept if kept is not None and kept == proc else proc
        self._procs = found
        return list(found.values())

    def close(self) -> None:
        self.sampler.close()


def _state_of(record: Any, snap: Any) -> str:
    state = getattr(record, "state", None) or "starting"
    if snap is not None and snap.state and snap.state not in ("starting", "running"):
        state = snap.state
    return state


def _chart_title(snap: Any) -> str:
    n = len(snap.losses)
    if not n:
        return "loss: waiting for the first logged iteration"
    lo = min(v for _, v in snap.losses)
    return f"loss per iteration · {n} points · last {snap.losses[-1][1]:.4f} · min {lo:.4f}"


def _checkpoint_of(snap: Any) -> Path | None:
    if snap is None or not snap.checkpoints:
        return None
    return snap.checkpoints[-1]


def _diagnose_now(record: Any) -> tuple[str | None, str | None]:
    from engine.runs.diagnose import diagnose

    try:
        text = Path(record.log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    cause = diagnose(text, record.exit_code, config_path=record.config)
    return (cause.message, cause.fix) if cause else (None, None)


def _host_sample(procs: list[Any]) -> tuple[float | None, float | None, float | None]:
    """(CPU %, resident GB) of the run's own processes, and the machine's RAM in GB: the
    run's load, not the whole machine's (other users, the wizard itself)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - a declared dependency
        return None, None, None
    total = round(psutil.virtual_memory().total / 1024**3, 1)
    if not procs:
        return None, None, total
    cpu = rss = 0.0
    for proc in procs:
        try:
            cpu += proc.cpu_percent(None)
            rss += proc.memory_info().rss
        except psutil.Error:
            continue
    return float(round(cpu)), round(rss / 1024**3, 1), total


def _preview_command(ws: Any, config: str) -> str:
    from engine.runs.launch import launch_command, plan_from_choices

    return launch_command(ws, config, plan_from_choices(ws))


def _start(ws: Any, config: str) -> Any:
    from engine.runs.launch import plan_from_choices, start_run

    # The Config step's GPUs and DeepSpeed stage (one plain process when none were chosen).
    return start_run(ws, config, plan=plan_from_choices(ws))


def _resume(ws: Any, run_id: str | None) -> Any:
    from engine.runs.launch import resume_run

    return resume_run(ws, run_id)
