"""What the trainer is doing before its first iteration, read from its console log.

An xtuner run spends a minute or more before ``Iter(train)`` lines appear: importing, loading
the model, preparing the dataset (``datasets``' progress bars), evaluating before training.
:func:`startup_phase` names that phase from the log's tail (the newest marker wins), with the
dataset's progress when a bar is there. Separate from monitor.py on purpose: one small
function, fed real captured lines in tests/test_phases.py. mmengine's lines are read by
``engine.runs.logparse``, the one parser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.runs.logparse import parse_log_line

# a tqdm bar of `datasets`: "Map (num_proc=32):   6%|▌   | 3/50 [00:02<01:06,  1.39s/ examples]"
_BAR = re.compile(r"([A-Z][\w ]*?(?: \(num_proc=\d+\))?):\s+(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")


@dataclass(frozen=True)
class Phase:
    name: str  # starting | loading | dataset | evaluating | training
    text: str  # what the screen says
    progress: tuple[int, int] | None = None  # (done, total) of the dataset step shown


def _bar(line: str) -> Phase | None:
    bars = _BAR.findall(line)
    if not bars:
        return None
    what, _pct, done, total = bars[-1]
    what = what.replace(" (num_proc=", " (").strip()
    return Phase(
        "dataset",
        f"preparing the dataset: {what} {done}/{total}",
        (int(done), int(total)),
    )


def startup_phase(lines: Sequence[str]) -> Phase:
    """The phase the log's tail shows, newest marker first; once an iteration is logged,
    training (later evaluations and checkpoints are the monitor's phases)."""
    parsed = [(line, parse_log_line(line)) for line in lines]
    if any(rec and rec["kind"] == "iter" and rec["mode"] == "train" for _, rec in parsed):
        return Phase("training", "training")
    for line, rec in reversed(parsed):
        if rec is not None:
            kind, message = rec["kind"], rec["message"]
            if kind == "iter":
                return Phase("training", "training")
            if kind == "sample" or (kind == "eval_start" and rec["hook_point"] == "before_train"):
                return Phase(
                    "evaluating", "evaluating before training (the model answers the questions)"
                )
            if kind == "num_samples" or message.startswith("train example:"):
                return Phase("dataset", "preparing the dataset: done")
            if message.startswith(("Hooks will be executed", "Distributed training is not used")):
                return Phase("dataset", "preparing the dataset")
            if message.startswith(("Config:", "Failed to search registry")) or not message:
                return Phase("loading", "loading the model")
            continue
        bar = _bar(line)
        if bar is not None:
            return bar
        if line.startswith(("Generating train split", "Setting TOKENIZERS_PARALLELISM")):
            return Phase("dataset", "preparing the dataset")
    return Phase("starting", "starting xtuner (importing torch)")
