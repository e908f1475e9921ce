"""engine.runs.phases on the recorded demo run's real console log, cut where each phase was."""

from __future__ import annotations

from pathlib import Path

from engine.runs.phases import startup_phase

LOG = Path(__file__).parent / "data/train_run/workspace/.wizard/runs/20261129-023742/train.log"


def log_until(marker: str, *, including: bool = True) -> list[str]:
    """The log's lines up to ``marker`` as the monitor keeps them: split at newlines, a
    progress bar's line cut to its last carriage-return segment, the last 200."""
    text = LOG.read_bytes().decode("utf-8", errors="replace")
    lines = [raw.rstrip("\r").rsplit("\r", 1)[-1] for raw in text.split("\n")]
    for i, line in enumerate(lines):
        if marker in line:
            return lines[: i + 1 if including else i][-200:]  # the monitor keeps 200 lines
    raise AssertionError(f"{marker!r} not in the recorded log")


def test_each_start_up_phase_of_a_real_run():
    assert startup_phase(log_until("[xtuner-wizard] run")).name == "starting"
    assert startup_phase(log_until("Config:")).text == "loading the model"
    assert startup_phase(log_until("Hooks will be executed")).name == "dataset"
    filtering = startup_phase(log_until("Filter (num_proc=32)"))
    assert filtering.name == "dataset"
    assert filtering.text.startswith("preparing the dataset: Filter (32) ")
    assert filtering.progress == (50, 50)
    mapping = startup_phase(log_until("Map (num_proc=32)"))
    assert mapping.text.startswith("preparing the dataset: Map (32) ")
    before = startup_phase(log_until("before_train in EvaluateChatHook"))
    assert before.name == "evaluating" and "before training" in before.text
    assert startup_phase(log_until("Sample output:")).name == "evaluating"
    assert startup_phase(log_until("Iter(train) [ 1/40]")).name == "training"


def test_the_whole_log_ends_in_training():
    assert startup_phase(log_until("Saving checkpoint at 40")).name == "training"
