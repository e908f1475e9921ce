"""The Chat step: talk to the tuned model, compare it with the base, evaluate it.

- Chat: multi-turn, streamed; system prompt, temperature, top-p, max new tokens; stop; clear.
- Before / After: the same prompt answered side by side by the base and the tuned model.
- Evaluation: engine.evaluate on the held-out identity questions and general prompts.

Models load and answer in worker threads (engine.chat.load_engine with the run's prompt
template). Streamed text is collected in a buffer and painted by a timer at most 10 times a
second (5 on a slow link): a slow SSH link gets batches of tokens, not a repaint per token.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static, TabbedContent, TabPane

from tui.format import without_tokens
from tui.step import StepPane

FLUSH_S = 0.1  # <= 10 repaints a second while streaming
FLUSH_S_LOW_BANDWIDTH = 0.2
ENGINES = (  # auto first, the default as for `chat`: fast on CUDA where it runs, else hf
    ("auto (fast on GPU)", "auto"),
    ("transformers (hf)", "hf"),
    ("fast (GPU, CUDA graphs)", "fast"),
    ("fast + torch.compile", "fast-compile"),
    ("lmdeploy", "lmdeploy"),
)


class ChatStatus(Message):
    def __init__(self, target: str, text: str) -> None:
        super().__init__()
        self.target = target
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ChatStatus) and message.target == self.target


class AnswerDone(Message):
    def __init__(self, target: str, text: str, info: str, stopped: bool, error: str | None = None):
        super().__init__()
        self.target = target
        self.text = text
        self.info = info
        self.stopped = stopped
        self.error = error


class GenerationFinished(Message):
    pass


class EvalProgress(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EvalProgress)


class EvalFinished(Message):
    def __init__(self, report: dict | None, error: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.error = error


def short_path(ws, path: Path | None) -> str:
    if path is None:
        return "none"
    rel = ws.rel(path)
    return rel if not Path(rel).is_absolute() else Path(path).name


class ChatPane(StepPane):
    step_id = "chat"
    title = "Chat"
    WHAT = (
        "Asks the tuned (merged) model: type a question, Enter sends, the answer streams. "
        "Before / After asks the base and the tuned model the same question; Evaluation asks "
        "both the held-out identity questions and a few general prompts; Settings holds the "
        "system prompt, temperature, top-p and max new tokens. f2 switches tabs."
    )
    NEXT = "The last step: ask who it is (请介绍一下你自己), compare with the base, evaluate."
    MAIN = "#chat-input"

    BINDINGS = [
        Binding("enter", "ask", "Ask"),
        Binding("f2", "next_tab", "Next tab"),
        Binding("ctrl+s", "stop", "Stop answer"),
        Binding("ctrl+l", "clear", "Clear", show=False),
    ]

    DEFAULT_CSS = """
    ChatPane #chat-top { height: 1; }
    ChatPane #chat-model-name { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    ChatPane #chat-engine { width: 26; }
    ChatPane .chat-setting { height: 1; margin-bottom: 1; }
    ChatPane .chat-setting Label { width: 18; }
    ChatPane .chat-setting Input { width: 1fr; }
    ChatPane #chat-tabs { height: 1fr; }
    ChatPane #chat-tabs > ContentSwitcher { height: 1fr; }
    ChatPane TabPane { padding: 0; height: 1fr; }
    ChatPane #chat-log { height: 1fr; }
    ChatPane #chat-current { color: $text; }
    ChatPane #chat-status, ChatPane .ba-label { height: 1; color: $text-muted;
        text-wrap: nowrap; text-overflow: ellipsis; }
    ChatPane .ba-side { width: 1fr; height: 1fr; padding: 0 1 0 0; }
    ChatPane .ba-answer { height: auto; }
    ChatPane #eval-run { margin: 1 0; }
    ChatPane #chat-input-row { height: 1; }
    ChatPane #chat-input { width: 1fr; }
    ChatPane #chat-input-row Button { margin-left: 1; width: auto; min-width: 0; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._history: list[dict] = []
        self._engines: dict[str, Any] = {}  # role -> loaded engine
        self._engine_keys: dict[str, tuple] = {}
        self._stop_event = threading.Event()
        self._buf_lock = threading.Lock()
        self._pending: dict[str, list[str]] = {}
        self._live: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._flush_timer = None
        self._busy = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-top"):
            yield Static("", id="chat-model-name")
            yield Select(ENGINES, value="auto", allow_blank=False, id="chat-engine", compact=True)
        with TabbedContent(id="chat-tabs", initial="tab-chat"):
            with TabPane("Chat", id="tab-chat"):
                with VerticalScroll(id="chat-log"):
                    yield Static("", id="chat-history")
                    yield Static("", id="chat-current")
                yield Static("", id="chat-status")
            with TabPane("Before / After", id="tab-ba"):
                with Horizontal():
                    with Vertical(classes="ba-side"):
                        yield Static("Base", id="ba-base-label", classes="ba-label")
                        with VerticalScroll():
                            yield Static("", id="ba-base", classes="ba-answer")
                    with Vertical(classes="ba-side"):
                        yield Static("Tuned", id="ba-tuned-label", classes="ba-label")
                        with VerticalScroll():
                            yield Static("", id="ba-tuned", classes="ba-answer")
            with TabPane("Evaluation", id="tab-eval"):
                yield Button(
                    "Run evaluation (held-out identity + general prompts)",
                    id="eval-run",
                    compact=True,
                )
                yield Static("", id="eval-status")
                with VerticalScroll():
                    yield Static("", id="eval-summary")
            with TabPane("Settings", id="tab-settings"):
                with VerticalScroll(can_focus=False):
                    yield from self._setting(
                        "Tuned model",
                        Select([], prompt="none yet", id="chat-tuned", compact=True),
                    )
                    yield from self._setting(
                        "System prompt",
                        Input(
                            placeholder="empty: none, as in training",
                            id="chat-system",
                            compact=True,
                        ),
                    )
                    yield from self._setting(
                        "Temperature",
                        Input("0", id="chat-temp", compact=True, tooltip="0 = greedy"),
                    )
                    yield from self._setting("Top-p", Input("1.0", id="chat-topp", compact=True))
                    yield from self._setting(
                        "Max new tokens", Input("256", id="chat-max", compact=True)
                    )
        with Horizontal(id="chat-input-row"):
            yield Input(
                placeholder="Ask… (Enter sends; on Before / After both models answer)",
                id="chat-input",
                compact=True,
            )
            yield Button("Stop", id="chat-stop", compact=True)
            yield Button("Clear", id="chat-clear", compact=True)

    def _setting(self, label: str, widget) -> ComposeResult:
        with Horizontal(classes="chat-setting"):
            yield Label(label)
            yield widget

    def action_ask(self) -> None:
        """Enter: into the question field (from the rail or a tab)."""
        self.query_one("#chat-input", Input).focus()

    def action_next_tab(self) -> None:
        tabs = self.query_one("#chat-tabs", TabbedContent)
        order = ["tab-chat", "tab-ba", "tab-eval", "tab-settings"]
        index = order.index(tabs.active) if tabs.active in order else -1
        tabs.active = order[(index + 1) % len(order)]
        if tabs.active == "tab-settings":
            self.query_one("#chat-tuned", Select).focus()  # the first setting: which model
        elif tabs.active == "tab-eval":
            self.query_one("#eval-run", Button).focus()
        else:
            self.query_one("#chat-input", Input).focus()

    # -- models --------------------------------------------------------------------------
    def on_step_shown(self) -> None:
        self._fill_tuned()
        self._show_models()
        self._show_report()

    def _fill_tuned(self) -> None:
        """The tuned models to pick from (engine.selection: the merged one, then each finished
        run's checkpoint), the current pick kept, else the engine's default."""
        from engine.chat.tuned import tuned_models

        self._tuned_choices = {t.key: t for t in tuned_models(self.workspace)}
        select = self.query_one("#chat-tuned", Select)
        current = select.value
        options = [(t.label(self.workspace), key) for key, t in self._tuned_choices.items()]
        with self.prevent(Select.Changed):
            select.set_options(options)
            if options:
                select.value = current if current in self._tuned_choices else options[0][1]

    def _tuned(self):
        value = self.query_one("#chat-tuned", Select).value
        return getattr(self, "_tuned_choices", {}).get(value) if isinstance(value, str) else None

    def _tuned_label(self) -> str:
        tuned = self._tuned()
        return "none" if tuned is None else tuned.label(self.workspace)

    def _show_models(self) -> None:
        base, tuned = self._models()
        ws = self.workspace
        self.query_one("#chat-model-name", Static).update(
            Text(f"tuned {self._tuned_label()} · base {short_path(ws, base)}")
        )
        self.query_one("#ba-base-label", Static).update(Text(f"Base · {short_path(ws, base)}"))
        self.query_one("#ba-tuned-label", Static).update(Text(f"Tuned · {self._tuned_label()}"))
        if tuned is None:
            self.query_one("#chat-status", Static).update(
                "No tuned model yet: train a run (step 4) or merge one (step 5)."
            )

    def _models(self) -> tuple[Path | None, Path | None]:
        """(base, tuned path): a run's base model and checkpoint, or the merged model's."""
        from engine.evaluate import default_models

        tuned = self._tuned()
        if tuned is not None and tuned.kind == "run":
            from engine.chat.adapter import run_adapter
            from engine.errors import WizardError

            try:
                return run_adapter(self.workspace, tuned.run_id).base_model, tuned.path
            except WizardError:
                return None, tuned.path
        base, merged = default_models(self.workspace)
        return base, merged if tuned is not None else None

    @on(Select.Changed, "#chat-tuned")
    def _tuned_changed(self, event: Select.Changed) -> None:
        choices = getattr(self, "_tuned_choices", {})
        if not isinstance(event.value, str) and choices:
            event.select.value = next(iter(choices))  # the blank row is no choice: the default
            return
        self._show_models()
        self.query_one("#chat-status", Static).update(
            Text(f"tuned model: {self._tuned_label()} (it loads on the next question)")
        )

    def _engine_name(self) -> str:
        value = self.query_one("#chat-engine", Select).value
        return value if isinstance(value, str) else "auto"  # Select.NULL: none chosen

    def _get_engine(self, role: str, name: str, target: str):
        """Load (once) the ``role`` model ("base"/"tuned") in this worker thread."""
        import time

        from engine.chat.base import load_engine
        from engine.chat.templates import resolve_template

        base, tuned = self._models()
        path = tuned if role == "tuned" else base
        if path is None:
            from engine.errors import WizardError

            raise WizardError(f"no {role} model", fix="train a run (step 4) or merge one (step 5)")
        from_run = self._tuned() if role == "tuned" else None
        from_run = from_run if from_run is not None and from_run.kind == "run" else None
        key = (name, str(path))
        if self._engine_keys.get(role) == key:
            return self._engines[role]
        old = self._engines.pop(role, None)
        if old is not None:
            old.close()
        shown = self._tuned_label() if role == "tuned" else short_path(self.workspace, path)
        self.post_message(ChatStatus(target, f"loading the {role} model {shown} ({name})…"))
        t0 = time.monotonic()
        # the folder's Python only once confirmed (Environment, t): else one line, not loaded
        if from_run is not None:  # its checkpoint's LoRA folded into the base, not merged
            from engine.chat.adapter import load_run_engine

            engine = load_run_engine(self.workspace, from_run.run_id, engine=name)
        else:
            template = resolve_template(None, model_path=tuned) if tuned else None
            engine = load_engine(name, path, template=template, workspace=self.workspace)
        self._engines[role] = engine
        self._engine_keys[role] = key
        self.post_message(
            ChatStatus(target, f"{role} model loaded in {time.monotonic() - t0:.1f}s")
        )
        return engine

    # -- settings ------------------------------------------------------------------------
    def _settings(self) -> dict | None:
        def num(wid: str, kind, lo, hi):
            raw = self.query_one(wid, Input).value.strip()
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not (lo <= value <= hi):
                self.app.notify(
                    f"{wid[6:]}: {raw!r} is not a number in {lo}..{hi}", severity="error"
                )
                return None
            return value

        temp = num("#chat-temp", float, 0.0, 5.0)
        top_p = num("#chat-topp", float, 0.0, 1.0)
        max_new = num("#chat-max", int, 1, 8192)
        if temp is None or top_p is None or max_new is None:
            return None
        system = self.query_one("#chat-system", Input).value.strip() or None
        return dict(system=system, temperature=temp, top_p=top_p or 1.0, max_new_tokens=max_new)

    # -- sending -------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or self._busy:
            return
        settings = self._settings()
        if settings is None:
            return
        event.input.value = ""
        tab = self.query_one("#chat-tabs", TabbedContent).active
        if tab == "tab-ba":
            jobs = [
                ("ba-base", "base", [{"role": "user", "content": text}]),
                ("ba-tuned", "tuned", [{"role": "user", "content": text}]),
            ]
            for target in ("ba-base", "ba-tuned"):
                self._live[target] = ""
                self.query_one(f"#{target}", Static).update(Text(f"> {text}\n", style="bold"))
            self._prompt_prefix = f"> {text}\n"
        else:
            if tab != "tab-chat":
                self.query_one("#chat-tabs", TabbedContent).active = "tab-chat"
            self._history.append({"role": "user", "content": text})
            self._paint_history()
            jobs = [("chat-current", "tuned", list(self._history))]
            self._live["chat-current"] = ""
            self.query_one("#chat-current", Static).update("")
        self._start(jobs, settings)

    def _start(self, jobs, settings) -> None:
        self._busy = True
        self._stop_event.clear()
        self.set_status("running")
        low = getattr(self.app, "low_bandwidth", False)
        self._flush_timer = self.set_interval(
            FLUSH_S_LOW_BANDWIDTH if low else FLUSH_S, self._flush
        )
        self._generate(jobs, settings, self._engine_name())

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-generate")
    def _generate(self, jobs, settings, engine_name: str) -> None:
        from engine.errors import WizardError

        unexpected: Exception | None = None
        for target, role, messages in jobs:
            pieces: list[str] = []
            try:
                engine = self._get_engine(
                    role, engine_name, target if target != "chat-current" else "chat-status"
                )
                for piece in engine.stream_chat(messages, stop_event=self._stop_event, **settings):
                    pieces.append(piece)
                    with self._buf_lock:
                        self._pending.setdefault(target, []).append(piece)
                st = engine.stats
                rate = st.decode_tokens_per_s
                info = f"{role}: {st.new_tokens} tokens" + (
                    f" · {rate:.1f} tokens/s" if rate else ""
                )
                self.post_message(AnswerDone(target, "".join(pieces), info, st.stopped))
            except WizardError as exc:  # the user's to fix: its one line, in the pane
                self.post_message(AnswerDone(target, "".join(pieces), "", False, str(exc)))
            except Exception as exc:  # unexpected: in the pane, then to the app's handler
                line = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.post_message(AnswerDone(target, "".join(pieces), "", False, line))
                unexpected = unexpected or exc
            if self._stop_event.is_set():
                break
        self.post_message(GenerationFinished())
        if unexpected is not None:
            # the app's one handler: the line on the screen, the traceback in .wizard/wizard.log
            raise unexpected

    def _flush(self) -> None:
        with self._buf_lock:
            pending, self._pending = self._pending, {}
        for target, pieces in pending.items():
            self._live[target] = self._live.get(target, "") + "".join(pieces)
            self._paint_live(target)

    def _paint_live(self, target: str, suffix: str = "") -> None:
        text = self._live.get(target, "") + suffix
        if target == "chat-current":
            self.query_one("#chat-current", Static).update(
                Text.assemble(("assistant: ", "bold"), without_tokens(text))
            )
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)
        else:
            self.query_one(f"#{target}", Static).update(
                Text.assemble((getattr(self, "_prompt_prefix", ""), "bold"), without_tokens(text))
            )

    def on_chat_status(self, message: ChatStatus) -> None:
        if message.target == "chat-status":
            self.query_one("#chat-status", Static).update(Text(message.text))
        elif message.target in ("ba-base", "ba-tuned"):
            self.query_one(f"#{message.target}-label", Static).update(Text(message.text))

    def on_answer_done(self, message: AnswerDone) -> None:
        self._flush()
        self._live[message.target] = message.text
        suffix = " [stopped]" if message.stopped else ""
        if message.error:
            suffix += f"\n(error: {message.error})"
        self._paint_live(message.target, suffix)
        base, tuned = self._models()
        ws = self.workspace
        if message.target == "chat-current":
            self._history.append({"role": "assistant", "content": without_tokens(message.text)})
            self._paint_history()
            self._live["chat-current"] = ""
            self.query_one("#chat-current", Static).update("")
            status = message.info + (" [stopped]" if message.stopped else "")
            if message.error:
                status = f"error: {message.error}"
            self.query_one("#chat-status", Static).update(Text(status))
        else:
            role = "Base" if message.target == "ba-base" else "Tuned"
            shown = short_path(ws, base) if message.target == "ba-base" else self._tuned_label()
            info = message.info.split(" · ")[0].split(": ", 1)[-1]
            self.query_one(f"#{message.target}-label", Static).update(
                Text(
                    f"{role} · {shown} · "
                    + (f"error: {message.error}" if message.error else info)
                    + (" [stopped]" if message.stopped else "")
                )
            )

    def on_generation_finished(self, _message: GenerationFinished) -> None:
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._flush()
        self._busy = False
        self.set_status(None)
        if self._history and any(m["role"] == "assistant" for m in self._history):
            self.mark_done()

    def _paint_history(self) -> None:
        text = Text()
        for msg in self._history:
            who = "you" if msg["role"] == "user" else "assistant"
            text.append(f"{who}: ", style="bold")
            text.append(msg["content"] + "\n")
        self.query_one("#chat-history", Static).update(text)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    # -- actions -------------------------------------------------------------------------
    def action_stop(self) -> None:
        self._stop_event.set()

    def action_clear(self) -> None:
        if self._busy:
            self._stop_event.set()
        self._history.clear()
        self._paint_history()
        self.query_one("#chat-current", Static).update("")
        self.query_one("#chat-status", Static).update("history cleared")

    @on(Button.Pressed, "#chat-stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    @on(Button.Pressed, "#chat-clear")
    def _clear_pressed(self) -> None:
        self.action_clear()

    @on(Select.Changed, "#chat-engine")
    def _engine_changed(self) -> None:
        if self._engine_name() == getattr(self, "_engine_shown", "auto"):
            return  # the Select setting its first value: nothing changed
        self._engine_shown = self._engine_name()
        self.query_one("#chat-status", Static).update(
            Text(f"engine: {self._engine_name()} (the model loads again on the next question)")
        )

    # -- evaluation ----------------------------------------------------------------------
    @on(Button.Pressed, "#eval-run")
    def _eval_pressed(self) -> None:
        if self._busy:
            return
        self._busy = True
        self.query_one("#eval-status", Static).update("starting…")
        self._eval_worker(self._engine_name())

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-eval")
    def _eval_worker(self, engine_name: str) -> None:
        from engine.evaluate import evaluate

        def progress(what: str, done: int, total: int) -> None:
            self.post_message(EvalProgress(f"[{done}/{total}] {what}"))

        from engine.errors import WizardError

        try:
            report = evaluate(self.workspace, engine=engine_name, progress=progress)
        except WizardError as exc:  # the user's to fix: its one line, in the pane
            self.post_message(EvalFinished(None, str(exc)))
        except Exception as exc:
            # unexpected: the pane says it failed, then the app's one handler shows the line
            # and writes the traceback to .wizard/wizard.log
            self.post_message(EvalFinished(None, f"{type(exc).__name__}: {exc}".splitlines()[0]))
            raise
        else:
            self.post_message(EvalFinished(report.to_json()))

    def on_eval_progress(self, message: EvalProgress) -> None:
        self.query_one("#eval-status", Static).update(Text(message.text))

    def on_eval_finished(self, message: EvalFinished) -> None:
        self._busy = False
        if message.error:
            self.query_one("#eval-status", Static).update(
                Text(f"evaluation failed: {message.error}")
            )
            return
        self.query_one("#eval-status", Static).update("done: eval/report.md")
        self._show_report(message.report)

    def _show_report(self, report: dict | None = None) -> None:
        from engine.evaluate import load_report

        report = report or load_report(self.workspace)
        if not report:
            self.query_one("#eval-summary", Static).update(
                "No evaluation yet. It asks base and tuned models the held-out identity questions "
                "(never trained on) and a few general prompts, greedily."
            )
            return
        s = report.get("summary", {})

        def pct(x):
            return "-" if x is None else f"{100 * x:.0f}%"

        text = Text()
        text.append(f"identity (held-out, {s.get('identity_questions')} questions): ", style="bold")
        text.append(f"tuned {pct(s.get('tuned_hit_rate'))} · base {pct(s.get('base_hit_rate'))}\n")
        text.append("general prompts: ", style="bold")
        text.append(
            f"tuned answers keep {pct(s.get('general_similarity'))} of the base answers' tokens\n\n"
        )
        for a in report.get("answers", [])[:12]:
            mark = (
                ("✓" if a.get("tuned_hit") else "✗")
                if a["kind"] == "identity"
                else f"{a.get('similarity') or 0:.2f}"
            )
            text.append(f"{mark} {a['input'][:50]}\n", style="bold")
            text.append(f"   tuned: {' '.join(a.get('tuned', '').split())[:100]}\n")
        self.query_one("#eval-summary", Static).update(text)
