"""Did the fine-tune work? Ask base and tuned models the same questions, greedily.

- Held-out identity questions (``datas/heldout.json`` from the data step: paraphrases never
  seen in training): the share answered with the identity (every keyword present).
- General prompts: how far the tuned answers moved from the base ones (token-level similarity
  of the two answers, 1.0 = unchanged); a fine-tune that only taught the identity should
  leave these close.

Greedy decoding, fixed order: the same models give the same report. The report is written to
``<ws>/eval/report.json`` and ``report.md``.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import WizardError
from engine.workspace import Workspace, atomic_write

# The tutorial's two questions, used when the data step wrote no held-out set.
TUTORIAL_QUESTIONS = ["请介绍一下你自己", "你在实战营做什么"]
DEFAULT_GENERAL = ["What is the capital of France?", "1+1等于几？", "Write a haiku about autumn."]

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class Answer:
    input: str
    kind: str  # identity | general
    base: str = ""
    tuned: str = ""
    base_hit: bool | None = None
    tuned_hit: bool | None = None
    similarity: float | None = None  # general prompts: base vs tuned


@dataclass
class EvalReport:
    base_model: str
    tuned_model: str
    keywords: list[str]
    answers: list[Answer] = field(default_factory=list)
    heldout_source: str = ""
    engine: str = "hf"
    max_new_tokens: int = 64
    created: str = ""
    seconds: float = 0.0

    def _identity(self) -> list[Answer]:
        return [a for a in self.answers if a.kind == "identity"]

    @property
    def tuned_hit_rate(self) -> float | None:
        ident = self._identity()
        return sum(bool(a.tuned_hit) for a in ident) / len(ident) if ident else None

    @property
    def base_hit_rate(self) -> float | None:
        ident = self._identity()
        return sum(bool(a.base_hit) for a in ident) / len(ident) if ident else None

    @property
    def general_similarity(self) -> float | None:
        sims = [
            a.similarity for a in self.answers if a.kind == "general" and a.similarity is not None
        ]
        return sum(sims) / len(sims) if sims else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = {
            "identity_questions": len(self._identity()),
            "tuned_hit_rate": self.tuned_hit_rate,
            "base_hit_rate": self.base_hit_rate,
            "general_prompts": sum(a.kind == "general" for a in self.answers),
            "general_similarity": self.general_similarity,
        }
        return data

    def summary_lines(self) -> list[str]:
        ident = self._identity()
        hits = sum(bool(a.tuned_hit) for a in ident)
        base_hits = sum(bool(a.base_hit) for a in ident)
        lines = [
            f"identity: tuned {hits}/{len(ident)} ({_pct(self.tuned_hit_rate)}), "
            f"base {base_hits}/{len(ident)} ({_pct(self.base_hit_rate)}) held-out questions "
            f"answered with {' + '.join(self.keywords)}",
        ]
        sim = self.general_similarity
        if sim is not None:
            lines.append(
                f"general: tuned answers keep {_pct(sim)} of the base answers' tokens "
                f"(moved {_pct(1 - sim)}) over {sum(a.kind == 'general' for a in self.answers)} prompts"
            )
        return lines

    def markdown(self) -> str:
        out = [
            "# Evaluation: base vs tuned",
            "",
            f"- base: `{self.base_model}`",
            f"- tuned: `{self.tuned_model}`",
            f"- questions: {self.heldout_source}; greedy, {self.max_new_tokens} new tokens, "
            f"engine {self.engine}; {self.created}",
            "",
            *[f"**{line}**" for line in self.summary_lines()],
            "",
            "| kind | question | base | tuned | identity (base/tuned) or similarity |",
            "|---|---|---|---|---|",
        ]
        for a in self.answers:
            score = (
                f"{_mark(a.base_hit)} / {_mark(a.tuned_hit)}"
                if a.kind == "identity"
                else (f"{a.similarity:.2f}" if a.similarity is not None else "")
            )
            out.append(
                f"| {a.kind} | {_cell(a.input)} | {_cell(a.base)} | {_cell(a.tuned)} | {score} |"
            )
        return "\n".join(out) + "\n"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _mark(x: bool | None) -> str:
    return "-" if x is None else ("yes" if x else "no")


def _cell(text: str, n: int = 80) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def has_identity(answer: str, keywords: list[str]) -> bool:
    low = answer.lower()
    return bool(keywords) and all(k.lower() in low for k in keywords)


def token_similarity(tokenizer: Any, a: str, b: str) -> float:
    ta = tokenizer.encode(a, add_special_tokens=False) if tokenizer is not None else list(a)
    tb = tokenizer.encode(b, add_special_tokens=False) if tokenizer is not None else list(b)
    if not ta and not tb:
        return 1.0
    return difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()


def load_questions(ws: Workspace, path: str | Path | None = None) -> dict[str, Any]:
    """{"keywords", "questions": [str], "general": [str], "source"} from heldout.json or fallback."""
    from engine.selection import absolute

    p = absolute(path) if path else ws.heldout_path  # typed: from the current folder
    if p.is_file():
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except RecursionError as exc:
            raise WizardError(
                "unreadable held-out set: JSON nested too deeply",
                where=str(p),
                fix="regenerate it with `xtuner-wizard data generate`",
            ) from exc
        except (OSError, ValueError) as exc:
            raise WizardError(
                f"unreadable held-out set: {exc}",
                where=str(p),
                fix="regenerate it with `xtuner-wizard data generate`",
            ) from exc
        questions = [
            q["input"] for q in data.get("questions", []) if isinstance(q, dict) and q.get("input")
        ]
        general = [
            q["input"] for q in data.get("general", []) if isinstance(q, dict) and q.get("input")
        ]
        keywords = [k for k in data.get("keywords", []) if k]
        if not keywords and isinstance(data.get("facts"), dict) and data["facts"].get("name"):
            keywords = [data["facts"]["name"]]
        if not questions or not keywords:
            raise WizardError(
                "held-out set has no questions or keywords",
                where=str(p),
                fix="regenerate it with `xtuner-wizard data generate`",
            )
        return {
            "keywords": keywords,
            "questions": questions,
            "general": general or DEFAULT_GENERAL,
            "source": ws.rel(p),
        }
    if path:
        raise WizardError("held-out set not found", where=str(p), fix="give --heldout PATH")
    name = ws.load_state().choices.get("name")
    if not name:
        raise WizardError(
            "no held-out questions (datas/heldout.json) and no assistant name in the workspace",
            where=str(p),
            fix="generate the dataset first (`xtuner-wizard data generate --name NAME`)",
        )
    return {
        "keywords": [name],
        "questions": list(TUTORIAL_QUESTIONS),
        "general": list(DEFAULT_GENERAL),
        "source": "the tutorial's two questions (no datas/heldout.json)",
    }


def default_models(ws: Workspace) -> tuple[Path | None, Path | None]:
    """(base, tuned): the merged model's recorded base (or the chosen model), the merged model."""
    from engine.chat.templates import model_info
    from engine.export import latest_merged

    tuned = latest_merged(ws)
    base = None
    if tuned is not None and model_info(tuned).get("base_model"):
        base = Path(model_info(tuned)["base_model"])
    if base is None:
        from engine.selection import model_dir

        base = model_dir(ws)
    return base, tuned


def _typed_model(ws: Workspace, value: str | Path, where: str) -> Path:
    """A model typed on the command line: checked on entry, before anything loads."""
    from engine.selection import model_choice

    return model_choice(ws, value, where=where).path


def evaluate(
    ws: Workspace,
    *,
    base: str | Path | None = None,
    tuned: str | Path | None = None,
    adapter: str | Path | None = None,
    heldout: str | Path | None = None,
    engine: str = "hf",
    max_new_tokens: int = 64,
    device: str | None = None,
    template: Any = None,
    progress: Progress | None = None,
    write: bool = True,
    limit: int | None = None,
    trust_remote_code: bool = False,
) -> EvalReport:
    """Ask base and tuned the held-out and general questions; write the report.

    Both models' Python (remote code) must be trusted (``engine.trust``), or confirmed here
    with ``trust_remote_code``; asked before either loads."""
    from engine.chat.base import load_engine
    from engine.chat.templates import resolve_template
    from engine.selection import absolute

    started = time.monotonic()
    qs = load_questions(ws, heldout)
    d_base, d_tuned = default_models(ws)
    # typed paths: from the current folder, the demo names too (engine.selection)
    base_path = _typed_model(ws, base, "--base") if base else d_base
    tuned_path = _typed_model(ws, tuned, "--tuned") if tuned else (None if adapter else d_tuned)
    adapter_path = absolute(adapter) if adapter else None
    if adapter and tuned_path is None:
        tuned_path = base_path
    if base_path is None or tuned_path is None:
        raise WizardError(
            "no models to compare",
            fix="merge a run first, or pass --base MODEL and --tuned MODEL",
        )
    from engine.trust import require_trusted

    for flag, path in (("--base", base_path), ("--tuned", tuned_path)):
        if path.is_dir():  # a missing one is refused by the loader
            require_trusted(ws, path, consent=trust_remote_code, where=f"{flag} {path}")
    # One template for both (the run's), so only the weights differ.
    tmpl = resolve_template(template, model_path=tuned_path)
    questions = qs["questions"][:limit] if limit else qs["questions"]
    general = qs["general"][:limit] if limit else qs["general"]
    answers = [Answer(q, "identity") for q in questions] + [Answer(q, "general") for q in general]
    report = EvalReport(
        base_model=str(base_path),
        tuned_model=str(tuned_path) + (f" + adapter {adapter}" if adapter else ""),
        keywords=qs["keywords"],
        answers=answers,
        heldout_source=qs["source"],
        engine=engine,
        max_new_tokens=max_new_tokens,
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    total = 2 * len(answers)
    done = 0
    tokenizer = None
    for which, path, adp in (("base", base_path, None), ("tuned", tuned_path, adapter_path)):
        if progress:
            progress(f"loading the {which} model", done, total)
        eng = load_engine(engine, path, adapter=adp, template=tmpl, device=device, workspace=ws)
        tokenizer = eng.tokenizer
        try:
            for a in answers:
                if progress:
                    progress(f"{which}: {a.input[:40]}", done, total)
                text = eng.chat(
                    [{"role": "user", "content": a.input}], max_new_tokens=max_new_tokens
                )
                setattr(a, which, text.strip())
                if a.kind == "identity":
                    setattr(a, f"{which}_hit", has_identity(text, qs["keywords"]))
                done += 1
        finally:
            eng.close()
    for a in answers:
        if a.kind == "general":
            a.similarity = round(token_similarity(tokenizer, a.base, a.tuned), 4)
    report.seconds = round(time.monotonic() - started, 1)
    if progress:
        progress("done", total, total)
    if write:
        write_report(ws, report)
    return report


def report_paths(ws: Workspace) -> tuple[Path, Path]:
    return ws.root / "eval" / "report.json", ws.root / "eval" / "report.md"


def write_report(ws: Workspace, report: EvalReport) -> tuple[Path, Path]:
    jpath, mpath = report_paths(ws)
    atomic_write(jpath, json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    atomic_write(mpath, report.markdown())
    return jpath, mpath


def load_report(ws: Workspace) -> dict | None:
    try:
        return json.loads(report_paths(ws)[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
