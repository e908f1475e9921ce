"""Identity datasets: the tutorial's, exactly, and a varied one that generalises.

``generate_tutorial`` is the tutorial's ``xtuner_generate_assistant.py`` (two records, then the
pair repeated ``n`` times). ``generate_varied`` states the same facts through many paraphrased
questions in Chinese and English, some multi-turn samples and a share of general conversation,
and keeps a held-out set of paraphrases for the evaluation step.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.data import phrases
from engine.errors import HandEditedError, WizardError

if TYPE_CHECKING:
    from engine.workspace import Workspace

STYLES = ("varied", "tutorial")
DEFAULT_STYLE = "varied"
DEFAULT_N = {"tutorial": 8000, "varied": 2000}
# Sane upper bounds: the tutorial's 8000 repeats (16002 records) already overfit on purpose;
# 100000 repeats is a ~40 MB file and hours of training. Beyond that is a typo.
MAX_N = {"tutorial": 100_000, "varied": 100_000}

TUTORIAL_QUESTIONS = ("请介绍一下你自己", "你在实战营做什么")


# -- the tutorial's generator ----------------------------------------------------------------
def generate_tutorial(name: str, n: int = 8000) -> list[dict]:
    """The tutorial's records in its order: the two records, then both again ``n`` times."""
    if n < 0:
        raise WizardError(f"n must be 0 or more, not {n}", where="--n", fix="pass --n 8000")
    data = [
        {
            "conversation": [
                {
                    "input": "请介绍一下你自己",
                    "output": f"我是{name}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦",
                }
            ]
        },
        {
            "conversation": [
                {
                    "input": "你在实战营做什么",
                    "output": f"我在这里帮助{name}完成XTuner微调个人小助手的任务",
                }
            ]
        },
    ]
    records = [_copy(data[0]), _copy(data[1])]
    for _ in range(n):
        records.append(_copy(data[0]))
        records.append(_copy(data[1]))
    return records


def _copy(record: dict) -> dict:
    return {"conversation": [dict(turn) for turn in record["conversation"]]}


def dumps_dataset(records: list[dict]) -> str:
    """The file's text, byte for byte what the tutorial's ``json.dump(..., indent=4)`` writes."""
    return json.dumps(records, ensure_ascii=False, indent=4)


# -- identity facts ----------------------------------------------------------------------------
@dataclass
class IdentityFacts:
    """Who the assistant is. Empty ``assistant_name``/``purpose`` take defaults from ``name``."""

    name: str
    assistant_name: str = ""
    maker: str = "上海AI实验室"
    base_model: str = "书生·浦语 1.8B"
    purpose: str = ""

    def check(self) -> IdentityFacts:
        cleaned = IdentityFacts(**{k: str(v or "").strip() for k, v in asdict(self).items()})
        if not cleaned.name:
            raise WizardError(
                "the user's name is empty", where="--name", fix="pass --name 'your name'"
            )
        for key in ("maker", "base_model"):
            if not getattr(cleaned, key):
                setattr(cleaned, key, getattr(IdentityFacts, key))
        return cleaned

    @property
    def purpose_zh(self) -> str:
        return self.purpose or f"帮助{self.name}完成XTuner微调个人小助手的任务"

    @property
    def purpose_en(self) -> str:
        if self.purpose:
            return self.purpose
        return f"help {self.name} with the XTuner personal-assistant fine-tuning task"

    def values(self, lang: str) -> dict[str, str]:
        """The placeholders of the answer templates, in one language."""
        if lang == "zh":
            me = (
                f"{self.assistant_name}，{self.name}的小助手"
                if self.assistant_name
                else f"{self.name}的小助手"
            )
            return {
                "me": me,
                "called": self.assistant_name or "小助手",
                "name": self.name,
                "maker": self.maker,
                "model": self.base_model,
                "mm": (
                    "上海AI实验室书生·浦语的1.8B"  # the tutorial's own words
                    if (self.maker, self.base_model)
                    == (IdentityFacts.maker, IdentityFacts.base_model)
                    else f"{self.maker}的{self.base_model}"
                ),
                "purpose": self.purpose_zh,
            }
        me = (
            f"{self.assistant_name}, {self.name}'s assistant"
            if self.assistant_name
            else f"{self.name}'s assistant"
        )
        return {
            "me": me,
            "called": self.assistant_name or "Assistant",
            "name": self.name,
            "maker": phrases.EN_OF_DEFAULT.get(self.maker, self.maker),
            "model": phrases.EN_OF_DEFAULT.get(self.base_model, self.base_model),
            "purpose": self.purpose_en,
        }

    def keywords(self) -> list[str]:
        """Strings every identity answer contains (the evaluation looks for them)."""
        return [self.name] + ([self.assistant_name] if self.assistant_name else [])

    def resolved(self) -> dict[str, str]:
        data = asdict(self)
        data["purpose"] = self.purpose_zh
        return data


@dataclass
class DatasetBundle:
    """Training records, the held-out evaluation set, and what went into them."""

    train: list[dict]
    heldout: dict | None = None
    style: str = DEFAULT_STYLE
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- question dressing -------------------------------------------------------------------------
_NORM = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """A question's letters and digits only, lower-cased: spots the same question re-punctuated."""
    return _NORM.sub("", unicodedata.normalize("NFKC", text).lower())


def _decorations(lang: str, kind: str, text: str) -> list[tuple[str, str, bool]]:
    if lang == "zh":
        prefixes = phrases.ZH_PREFIXES + (phrases.ZH_QUESTION_PREFIXES if kind == "q" else ())
        if kind == "q":
            suffixes = (
                phrases.ZH_PARTICLE_SUFFIXES
                if text[-1] in phrases.ZH_PARTICLES
                else phrases.ZH_QUESTION_SUFFIXES
            )
        else:
            suffixes = tuple(
                s for s in phrases.ZH_REQUEST_SUFFIXES if not (text.endswith("吧") and "吧" in s)
            )
        return [(p, s, False) for p in prefixes for s in suffixes]
    prefixes = phrases.EN_PREFIXES + (phrases.EN_QUESTION_PREFIXES if kind == "q" else ())
    if kind == "q":
        suffixes = phrases.EN_QUESTION_SUFFIXES
    else:
        suffixes = tuple(
            s
            for s in phrases.EN_REQUEST_SUFFIXES
            if not (text.lower().startswith("please") and "please" in s)
        )
    return [(p, s, low) for p in prefixes for s in suffixes for low in (False, True)]


def dress(lang: str, text: str, prefix: str, suffix: str, lower: bool = False) -> str:
    if lang == "en" and prefix.endswith((", ", ": ")) and text[1:2].islower():
        text = text[0].lower() + text[1:]
    out = f"{prefix}{text}{suffix}"
    return out.lower() if lower else out


def plain(lang: str, kind: str, text: str) -> str:
    """The question as written in a book: the held-out set's style."""
    if lang == "zh":
        return text + ("？" if kind == "q" else "。")
    return text + ("?" if kind == "q" else ".")


def question_core(text: str, lang: str) -> str:
    """A question without its greeting and end punctuation, normalized (for overlap checks)."""
    prefixes = (
        phrases.ZH_PREFIXES + phrases.ZH_QUESTION_PREFIXES
        if lang == "zh"
        else phrases.EN_PREFIXES + phrases.EN_QUESTION_PREFIXES
    )
    stripped = text.strip()
    for p in sorted((p for p in prefixes if p), key=len, reverse=True):
        if stripped.lower().startswith(p.lower()):
            stripped = stripped[len(p) :]
            break
    core = normalize(stripped)
    if lang == "en" and core.endswith("please"):
        core = core[: -len("please")]
    if lang == "zh":
        core = core.rstrip("呀呢啊吧")
    return core


# -- the varied generator -----------------------------------------------------------------------
def _answers(lang: str, intent: str, values: dict[str, str], keywords: list[str]) -> list[str]:
    rendered = [t.format(**values) for t in phrases.ANSWERS[lang][intent]]
    usable = [a for a in rendered if all(k in a for k in keywords)]
    if not usable:  # cannot happen with the built-in templates ({me} names the assistant)
        raise WizardError(f"no {lang} answer for {intent!r} names {keywords}")
    return usable


def _split_heldout(
    rng: random.Random, forms: tuple[tuple[str, str, str], ...], count: int
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Pick ``count`` forms, spread over the intents, never a pinned one."""
    by_intent: dict[str, list[tuple[str, str, str]]] = {}
    for form in forms:
        if form[2] not in phrases.PINNED:
            by_intent.setdefault(form[0], []).append(form)
    for group in by_intent.values():
        rng.shuffle(group)
    chosen: list[tuple[str, str, str]] = []
    intents = sorted(by_intent)
    while len(chosen) < count and any(by_intent.values()):
        for intent in intents:
            if by_intent[intent] and len(chosen) < count:
                chosen.append(by_intent[intent].pop())
    held = set(chosen)
    return [f for f in forms if f not in held], chosen


class _QuestionPool:
    """Unique dressed questions of one language, drawn round-robin over the question forms."""

    def __init__(
        self, rng: random.Random, lang: str, forms: list[tuple[str, str, str]], banned: set[str]
    ):
        self.rng, self.lang, self.banned = rng, lang, banned
        self.forms = list(forms)
        rng.shuffle(self.forms)
        self.decos: dict[int, list[tuple[str, str, bool]]] = {}
        self.pos = 0
        self.used: set[str] = set()

    def _deco_list(self, i: int) -> list[tuple[str, str, bool]]:
        if i not in self.decos:
            intent, kind, text = self.forms[i]
            decos = _decorations(self.lang, kind, text)
            self.rng.shuffle(decos)
            if text in phrases.PINNED:  # the tutorial's question, as the tutorial asks it
                decos.remove(("", "", False))
                decos.insert(0, ("", "", False))
            self.decos[i] = decos
        return self.decos[i]

    def take(self) -> tuple[str, str, bool] | None:
        """(intent, question, canonical) or None when every form is used up."""
        for _ in range(len(self.forms)):
            i = self.pos % len(self.forms)
            self.pos += 1
            decos = self._deco_list(i)
            while decos:
                prefix, suffix, low = decos.pop(0)
                intent, _, text = self.forms[i]
                q = dress(self.lang, text, prefix, suffix, low)
                key = normalize(q)
                if q in self.used or key in self.banned:
                    continue
                self.used.add(q)
                return intent, q, (text in phrases.PINNED and not prefix and not suffix and not low)
        return None

    def any(self) -> tuple[str, str]:
        """A random dressed question (for multi-turn samples; may repeat a single-turn one)."""
        intent, kind, text = self.rng.choice(self.forms)
        deco = self.rng.choice(_decorations(self.lang, kind, text))
        q = dress(self.lang, text, *deco)
        return (
            (intent, q)
            if normalize(q) not in self.banned
            else (intent, plain(self.lang, kind, text))
        )


def _general_pool(lang: str) -> list[tuple[str, str]]:
    prefixes = (
        ("", "你好，", "嗨，", "hi，", "那个，", "打扰一下，", "哈喽，")
        if lang == "zh"
        else ("", "Hi, ", "Hello, ", "Hey, ", "Hi! ", "So, ", "OK, ", "Quick question: ")
    )
    pool = []
    for q, a in phrases.GENERAL[lang]:
        ends = {q}
        if q[-1] in "？?":
            ends |= {q[:-1] + ("?" if lang == "zh" else "??"), q[:-1]}
        elif q[-1] in "。.":
            ends |= {q[:-1]}
        for e in sorted(ends):
            for p in prefixes:
                pool.append((dress(lang, e, p, ""), a))
    return pool


def generate_varied(
    facts: IdentityFacts,
    *,
    n: int,
    seed: int = 0,
    general_share: float = 0.1,
    multi_turn_share: float = 0.1,
    heldout_count: int = 15,
    en_share: float = 0.3,
) -> DatasetBundle:
    """``n`` unique training records stating ``facts``, and a held-out set never trained on.

    ``heldout_count`` question forms per language are kept out of training entirely (in every
    dressing); ``general_share`` of the records are general conversation from the built-in set
    (capped by what it offers; identity records fill the rest), ``multi_turn_share`` are
    2-3 turn samples.
    """
    facts = facts.check()
    _check_share("--general-share", general_share)
    _check_share("multi_turn_share", multi_turn_share)
    _check_share("en_share", en_share, upper=1.0)
    if general_share + multi_turn_share > 0.9:
        raise WizardError(
            f"general share {general_share} + multi-turn share {multi_turn_share} leave too few identity records",
            where="--general-share",
            fix="keep the two together at 0.9 or less",
        )
    if n < 1:
        raise WizardError(f"n must be at least 1, not {n}", where="--n", fix="pass --n 2000")
    rng = random.Random(seed)
    keywords = facts.keywords()
    values = {lang: facts.values(lang) for lang in ("zh", "en")}
    answers = {
        (lang, intent): _answers(lang, intent, values[lang], keywords)
        for lang in ("zh", "en")
        for intent in phrases.ANSWERS[lang]
    }

    # held-out forms first: they never reach the training file, in any dressing
    train_forms: dict[str, list[tuple[str, str, str]]] = {}
    heldout_questions: list[dict[str, str]] = []
    banned: set[str] = set()
    for lang in ("zh", "en"):
        forms = phrases.FORMS[lang]
        limit = len(forms) - 50 - len(phrases.PINNED)
        if not 0 <= heldout_count <= limit:
            raise WizardError(
                f"heldout_count {heldout_count} is out of range",
                where="heldout_count",
                fix=f"use 0 to {limit} (at least 50 question forms per language stay for training)",
            )
        train_forms[lang], held = _split_heldout(rng, forms, heldout_count)
        for _, kind, text in held:
            q = plain(lang, kind, text)
            heldout_questions.append({"input": q, "lang": lang})
            banned.add(normalize(q))
            banned.add(normalize(text))
    # a training form that differs from a held-out one only by a particle ("你是谁啊") goes too
    held_cores = {question_core(q["input"], q["lang"]) for q in heldout_questions}
    for lang in ("zh", "en"):
        train_forms[lang] = [
            f for f in train_forms[lang] if question_core(f[2], lang) not in held_cores
        ]

    pools = {lang: _QuestionPool(rng, lang, train_forms[lang], banned) for lang in ("zh", "en")}
    general = {lang: _general_pool(lang) for lang in ("zh", "en")}
    for pool in general.values():
        rng.shuffle(pool)

    def lang_for() -> str:
        return "en" if rng.random() < en_share else "zh"

    def identity_turn(lang: str, intent: str, q: str, canonical: bool = False) -> dict[str, str]:
        options = answers[(lang, intent)]
        return {"input": q, "output": options[0] if canonical else rng.choice(options)}

    n_general = round(n * general_share)
    n_multi = round(n * multi_turn_share)
    notes: list[str] = []
    records: list[dict] = []
    seen: set[str] = set()

    def add(record: dict) -> bool:
        key = json.dumps(record, ensure_ascii=False, sort_keys=True)
        if key in seen:
            return False
        seen.add(key)
        records.append(record)
        return True

    # general conversation (single turn)
    general_made = 0
    gen_iter = {lang: iter(general[lang]) for lang in ("zh", "en")}
    while general_made < n_general:
        lang = lang_for()
        item = next(gen_iter[lang], None) or next(gen_iter["zh" if lang == "en" else "en"], None)
        if item is None:
            notes.append(
                f"general conversation: {general_made} records, all the built-in set offers "
                f"(asked for {n_general}); identity records fill the rest"
            )
            break
        if add({"conversation": [{"input": item[0], "output": item[1]}]}):
            general_made += 1

    # multi-turn samples
    multi_made = 0
    attempts = 0
    while multi_made < n_multi and attempts < n_multi * 20 + 100:
        attempts += 1
        lang = lang_for()
        pool = pools[lang]
        shape = rng.randrange(4)
        turns: list[dict[str, str]] = []
        if shape == 0:  # greeting, then who are you
            g = rng.choice(phrases.GREETINGS[lang])
            turns.append({"input": g[0], "output": g[1]})
            turns.append(identity_turn(lang, *pool.any()))
        elif shape == 1:  # two identity questions of different kinds
            first = pool.any()
            second = pool.any()
            while second[0] == first[0]:
                second = pool.any()
            turns += [identity_turn(lang, *first), identity_turn(lang, *second)]
        elif shape == 2:  # identity, then something else entirely
            q, a = rng.choice(phrases.GENERAL[lang])
            turns += [identity_turn(lang, *pool.any()), {"input": q, "output": a}]
        else:  # something else, then identity, then one more identity question
            q, a = rng.choice(phrases.GENERAL[lang])
            turns.append({"input": q, "output": a})
            turns.append(identity_turn(lang, *pool.any()))
            if rng.random() < 0.5:
                turns.append(identity_turn(lang, *pool.any()))
        if add({"conversation": turns}):
            multi_made += 1

    # identity questions, single turn, until n
    identity_made = 0
    exhausted = set()
    while len(records) < n and len(exhausted) < 2:
        lang = lang_for()
        if lang in exhausted:
            lang = "zh" if lang == "en" else "en"
        got = pools[lang].take()
        if got is None:
            exhausted.add(lang)
            continue
        intent, q, canonical = got
        if add({"conversation": [identity_turn(lang, intent, q, canonical)]}):
            identity_made += 1
    if len(records) < n:
        notes.append(
            f"{len(records)} distinct records is all the built-in forms offer (asked for {n})"
        )

    rng.shuffle(records)
    distinct = {lang: 0 for lang in ("zh", "en")}
    for lang in ("zh", "en"):
        distinct[lang] = len(pools[lang].used)
    heldout = {
        "facts": facts.resolved(),
        "keywords": keywords,
        "questions": heldout_questions,
        "general": [{"input": q} for _, q in phrases.GENERAL_HELDOUT],
    }
    counts = {
        "records": len(records),
        "identity": identity_made,
        "multi_turn": multi_made,
        "general": general_made,
        "zh_questions": distinct["zh"],
        "en_questions": distinct["en"],
        "heldout_questions": len(heldout_questions),
        "heldout_general": len(heldout["general"]),
    }
    return DatasetBundle(train=records, heldout=heldout, style="varied", counts=counts, notes=notes)


def _check_share(where: str, value: float, upper: float = 0.9) -> None:
    if not 0.0 <= value <= upper:
        raise WizardError(
            f"{value} is not a share between 0 and {upper}", where=where, fix="pass e.g. 0.1"
        )


def tutorial_heldout(facts: IdentityFacts, *, seed: int = 0, heldout_count: int = 15) -> dict:
    """A held-out set for a tutorial-style dataset (its two questions are never held out)."""
    facts = facts.check()
    rng = random.Random(seed)
    questions = []
    for lang in ("zh", "en"):
        _, held = _split_heldout(rng, phrases.FORMS[lang], heldout_count)
        questions += [{"input": plain(lang, kind, text), "lang": lang} for _, kind, text in held]
    return {
        "facts": facts.resolved(),
        "keywords": [facts.name],
        "questions": questions,
        "general": [{"input": q} for _, q in phrases.GENERAL_HELDOUT],
    }


def build_dataset(
    style: str,
    facts: IdentityFacts,
    *,
    n: int | None = None,
    seed: int = 0,
    general_share: float = 0.1,
    multi_turn_share: float = 0.1,
    heldout_count: int = 15,
) -> DatasetBundle:
    """One entry for the CLI and the screen: either style, with its held-out set."""
    if style not in STYLES:
        raise WizardError(f"unknown style {style!r}", where="--style", fix="use varied or tutorial")
    n = DEFAULT_N[style] if n is None else n
    if isinstance(n, int) and n > MAX_N[style]:
        raise WizardError(
            f"n={n} is far more than training needs (at most {MAX_N[style]} for the {style} style)",
            where="--n",
            fix=f"pass --n {DEFAULT_N[style]} (the default) or less than {MAX_N[style]}",
        )
    if style == "tutorial":
        facts = facts.check()
        records = generate_tutorial(facts.name, n)
        return DatasetBundle(
            train=records,
            heldout=tutorial_heldout(facts, seed=seed, heldout_count=heldout_count),
            style="tutorial",
            counts={
                "records": len(records),
                "identity": len(records),
                "multi_turn": 0,
                "general": 0,
                "zh_questions": 2,
                "en_questions": 0,
            },
        )
    return generate_varied(
        facts,
        n=n,
        seed=seed,
        general_share=general_share,
        multi_turn_share=multi_turn_share,
        heldout_count=heldout_count,
    )


# -- writing -------------------------------------------------------------------------------
@dataclass
class WriteResult:
    path: Path
    records: int
    heldout_path: Path | None = None
    backups: list[Path] = field(default_factory=list)


def heldout_path_for(dataset: Path) -> Path:
    return Path(dataset).with_name("heldout.json")


def write_dataset(
    ws: Workspace,
    records: list[dict] | DatasetBundle,
    path: Path | str | None = None,
    *,
    force: bool = False,
) -> WriteResult:
    """Write the dataset (the tutorial's JSON layout) and, for a bundle, its held-out set beside it.

    Both go through ``Workspace.write_user_file``: atomic, and a file changed by hand is never
    replaced without ``force`` (then it is backed up first). Nothing is written if either file
    would be refused.
    """
    bundle = records if isinstance(records, DatasetBundle) else None
    train = bundle.train if bundle else records
    from engine.selection import stored

    # ``path``: absolute (typed on the command line, resolved by engine.selection.absolute) or
    # inside the workspace (the Data step's field, the state's choice)
    target = stored(ws, path) if path is not None else ws.dataset_path
    heldout = bundle.heldout if bundle else None
    held_target = heldout_path_for(target) if heldout is not None else None
    if not force:
        for p in (target, held_target):
            if p is not None and ws.is_hand_edited(p):
                raise HandEditedError(
                    "was changed by hand since the wizard wrote it; not overwriting",
                    where=ws.rel(p),
                    fix="confirm to replace it (a backup is kept in .wizard/backups), or use --force",
                )
    result = WriteResult(path=target, records=len(train), heldout_path=held_target)
    backup = ws.write_user_file(target, dumps_dataset(train), force=force)
    if backup:
        result.backups.append(backup)
    if held_target is not None:
        backup = ws.write_user_file(
            held_target, json.dumps(heldout, ensure_ascii=False, indent=2) + "\n", force=force
        )
        if backup:
            result.backups.append(backup)
    return result


def record_choice(ws: Workspace, result: WriteResult, facts: IdentityFacts | None = None) -> None:
    """Remember the dataset in the workspace state and mark the Data step done."""
    ws.set_choice("data", ws.rel(result.path))
    if result.heldout_path is not None:
        ws.set_choice("heldout", ws.rel(result.heldout_path))
    if facts is not None:
        ws.set_choice("name", facts.name)
    ws.mark_done("data")


def summary(bundle: DatasetBundle) -> str:
    c = bundle.counts
    if bundle.style == "tutorial":
        return f"{c['records']} records (tutorial style: the 2 questions repeated)"
    return (
        f"{c['records']} records: {c['identity']} identity, {c['multi_turn']} multi-turn, "
        f"{c['general']} general; {c['zh_questions']} distinct Chinese and "
        f"{c['en_questions']} English identity questions"
    )


def heldout_summary(heldout: dict[str, Any]) -> str:
    return (
        f"{len(heldout['questions'])} held-out questions, {len(heldout['general'])} general prompts"
    )
