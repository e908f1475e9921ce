"""How big a dataset is: records, turns, duplicates, and sample lengths against max_length.

With a tokenizer (the model's own, through transformers' AutoTokenizer) a sample's length is
what XTuner feeds the model: the internlm2_chat template around every turn plus bos, as in
the tutorial's config; samples longer than ``max_length`` are truncated by XTuner. Without a
tokenizer, lengths are characters of the text (system + input + output). A tokenizer whose
folder brings Python is loaded only once that code is trusted (``engine.trust``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
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
    chars_because: str = "no model tokenizer was given"  # why characters (unit "chars")

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
            out.append(f"(characters, not tokens: {self.chars_because})")
        return out


def load_tokenizer(path: str | Path, ws: Any = None) -> Any:
    """The model's tokenizer (lazy transformers import); WizardError when it cannot load, and
    ``engine.trust.UntrustedCode`` when the folder's Python is not trusted (confirmed in the
    workspace ``ws`` by its hash, or the wizard's own demo code): it is not run."""
    p = Path(path)
    if not p.is_dir():
        raise WizardError(
            "no such model folder",
            where=str(path),
            fix="give the model's folder (with tokenizer files)",
        )
    from engine.trust import require_trusted

    remote = require_trusted(ws, p, where=f"the tokenizer's folder {p}") is not None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(p), trust_remote_code=remote)
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


def dataset_stats(
    records: Iterable[dict],
    tokenizer_path: str | Path | None = None,
    max_length: int = 2048,
    *,
    tokenizer: Any = None,
    ws: Any = None,
    chars_because: str | None = None,
) -> DataStats:
    """Counts and lengths; pass ``tokenizer_path`` (or a loaded ``tokenizer``) for token lengths
    (``ws``: where that folder's code may have been confirmed). ``chars_because``: why there
    is no tokenizer, said with the character counts."""
    if tokenizer is None and tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path, ws)
    # One pass; memory grows with the distinct records only (a digest and a length each),
    # never with the file: the tutorial's 16002 records are two distinct ones.
    lengths_of: dict[bytes, list[int]] = {}  # digest -> [count, length]
    duplicates = turns = multi = with_system = n = 0
    inputs: set[bytes] = set()
    bos = 1 if getattr(tokenizer, "bos_token_id", None) is not None else 0
    for record in records:
        n += 1
        key = hashlib.blake2b(
            json.dumps(record, ensure_ascii=False, sort_keys=True).encode(), digest_size=16
        ).digest()
        seen = lengths_of.get(key)
        if seen is not None:
            duplicates += 1
            seen[0] += 1
        else:
            if tokenizer is not None:
                texts = pieces(record)
                ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
                length = bos + sum(len(i) for i in ids)
            else:
                length = _chars(record)
            lengths_of[key] = [1, length]
        conv = [t for t in (record.get("conversation") or []) if isinstance(t, dict)]
        turns += len(conv)
        multi += len(conv) > 1
        with_system += any(t.get("system") for t in conv)
        inputs.update(
            hashlib.blake2b(str(t.get("input", "")).encode(), digest_size=16).digest() for t in conv
        )
    unit = "tokens" if tokenizer is not None else "chars"
    weighted = sorted((length, count) for count, length in lengths_of.values())
    return DataStats(
        records=n,
        turns=turns,
        multi_turn=multi,
        with_system=with_system,
        duplicates=duplicates,
        distinct_inputs=len(inputs),
        unit=unit,
        median=_weighted_median(weighted),
        p95=_weighted_rank(weighted, math.ceil(0.95 * n)) if n else 0,
        max=weighted[-1][0] if weighted else 0,
        max_length=max_length,
        truncated=sum(c for v, c in weighted if v > max_length) if unit == "tokens" else None,
        **({"chars_because": chars_because} if chars_because else {}),
    )


def _weighted_rank(weighted: list[tuple[int, int]], rank: int) -> int:
    """The value at 1-based ``rank`` of the sorted values, each repeated its count."""
    seen = 0
    for value, count in weighted:
        seen += count
        if seen >= max(rank, 1):
            return value
    return weighted[-1][0] if weighted else 0


def _weighted_median(weighted: list[tuple[int, int]]) -> float:
    n = sum(c for _, c in weighted)
    if not n:
        return 0
    if n % 2:
        return _weighted_rank(weighted, n // 2 + 1)
    return (_weighted_rank(weighted, n // 2) + _weighted_rank(weighted, n // 2 + 1)) / 2
