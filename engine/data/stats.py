"""How big a dataset is: records, turns, duplicates, and sample lengths against max_length.

With a tokenizer (the model's own, through transformers' AutoTokenizer) a sample's length is
what XTuner feeds the model: the internlm2_chat template around every turn plus bos, as in
the tutorial's config; samples longer than ``max_length`` are truncated by XTuner. Without a
tokenizer, lengths are characters of the text (system + input + output).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import WizardError

# xtuner.utils.PROMPT_TEMPLATE.internlm2_chat (kept here: importing xtuner costs seconds)
SYSTEM = "<|im_start|>system\n{system}<|im_end|>\n"
INSTRUCTION = "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
SUFFIX = "<|im_end|>"
SEP = "\n"


@dataclass
class DataStats:
    records: int
    turns: int
    multi_turn: int  # records with more than one turn
    with_system: int  # records with a system text
    duplicates: int  # records that repeat an earlier one exactly
    distinct_inputs: int
    unit: str  # "tokens" or "chars"
    median: float
    p95: int
    max: int
    max_length: int
    truncated: int | None  # samples over max_length (tokens only)

    def lines(self) -> list[str]:
        out = [
            f"records {self.records} · turns {self.turns} · multi-turn {self.multi_turn}"
            f" · system {self.with_system}",
            f"duplicates {self.duplicates} · distinct questions {self.distinct_inputs}",
            f"{self.unit}: median {self.median:g} · p95 {self.p95} · max {self.max}",
        ]
        if self.truncated is not None:
            out.append(
                f"over max_length {self.max_length}: {self.truncated}"
                + (" (XTuner truncates them)" if self.truncated else "")
            )
        else:
            out.append("(characters, not tokens: no model tokenizer was given)")
        return out


def load_tokenizer(path: str | Path) -> Any:
    """The model's tokenizer (lazy transformers import); WizardError when it cannot load."""
    p = Path(path)
    if not p.is_dir():
        raise WizardError(
            "no such model folder",
            where=str(path),
            fix="give the model's folder (with tokenizer files)",
        )
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(p), trust_remote_code=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's folder
        raise WizardError(
            f"cannot load a tokenizer: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
            where=str(path),
            fix="give a model folder with tokenizer files (tokenizer.json or tokenizer.model)",
        ) from exc


def pieces(record: dict) -> list[str]:
    """The texts XTuner encodes, one by one, for a record (internlm2_chat template).

    Per turn: the (system +) instruction, the output + suffix, the separator, as
    ``xtuner.dataset.utils.encode_fn`` does after ``template_map_fn``; bos once per record.
    """
    out = []
    for i, turn in enumerate(record.get("conversation") or []):
        if not isinstance(turn, dict):
            continue
        text = INSTRUCTION.format(input=turn.get("input") or "", round=i + 1)
        system = turn.get("system")
        if system:
            text = SYSTEM.format(system=system) + text
        out += [text, (turn.get("output") or "") + SUFFIX, SEP]
    return out


def _chars(record: dict) -> int:
    return sum(
        len(turn.get("system") or "") + len(turn.get("input") or "") + len(turn.get("output") or "")
        for turn in record.get("conversation") or []
        if isinstance(turn, dict)
    )


def _p95(sorted_values: list[int]) -> int:
    if not sorted_values:
        return 0
    rank = math.ceil(0.95 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def dataset_stats(
    records: list[dict],
    tokenizer_path: str | Path | None = None,
    max_length: int = 2048,
    *,
    tokenizer: Any = None,
) -> DataStats:
    """Counts and lengths; pass ``tokenizer_path`` (or a loaded ``tokenizer``) for token lengths."""
    if tokenizer is None and tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path)
    keys: dict[str, int] = {}
    duplicates = turns = multi = with_system = 0
    inputs: set[str] = set()
    for record in records:
        key = json.dumps(record, ensure_ascii=False, sort_keys=True)
        if key in keys:
            duplicates += 1
            keys[key] += 1
        else:
            keys[key] = 1
        conv = [t for t in (record.get("conversation") or []) if isinstance(t, dict)]
        turns += len(conv)
        multi += len(conv) > 1
        with_system += any(t.get("system") for t in conv)
        inputs.update(str(t.get("input", "")) for t in conv)
    # lengths: measured once per distinct record (the tutorial's file has two)
    distinct = [json.loads(k) for k in keys]
    weights = list(keys.values())
    if tokenizer is not None:
        split = [pieces(r) for r in distinct]
        flat = [t for texts in split for t in texts]
        encoded = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        bos = 1 if getattr(tokenizer, "bos_token_id", None) is not None else 0
        per, k = [], 0
        for texts in split:
            per.append(bos + sum(len(ids) for ids in encoded[k : k + len(texts)]))
            k += len(texts)
        unit = "tokens"
    else:
        per = [_chars(r) for r in distinct]
        unit = "chars"
    lengths = sorted(v for v, w in zip(per, weights, strict=True) for _ in range(w))
    return DataStats(
        records=len(records),
        turns=turns,
        multi_turn=multi,
        with_system=with_system,
        duplicates=duplicates,
        distinct_inputs=len(inputs),
        unit=unit,
        median=statistics.median(lengths) if lengths else 0,
        p95=_p95(lengths),
        max=lengths[-1] if lengths else 0,
        max_length=max_length,
        truncated=sum(v > max_length for v in lengths) if unit == "tokens" else None,
    )
