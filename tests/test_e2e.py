"""The tutorial end to end, through the command line, with real xtuner on the demo model."""

from __future__ import annotations

import json

import pytest
from conftest import TUTORIAL_ANSWER, wizard_cli
from merge_chat_support import GOLDEN

pytestmark = pytest.mark.slow


@GOLDEN
def test_run_all_then_chat_answers_with_the_trained_identity(tutorial_workspace):
    ws = tutorial_workspace
    out = ws.run_all_output
    assert "demo sizing" in out, "run-all says which sizes it picked for the demo model"
    every_step = {"environment", "data", "config", "train", "merge", "chat"}
    assert ws.done_after_run_all == every_step  # (later tests may reopen steps)
    assert (ws.merged_dir / "model.safetensors").is_file() or list(
        ws.merged_dir.glob("*.safetensors")
    )

    chat = wizard_cli("--workspace", str(ws.root), "chat", "--prompt", "请介绍一下你自己")
    assert chat.returncode == 0, chat.stderr
    assert TUTORIAL_ANSWER in chat.stdout

    runs = wizard_cli("--workspace", str(ws.root), "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    records = json.loads(runs.stdout)
    assert records[-1]["state"] == "succeeded" and records[-1]["exit_code"] == 0


@GOLDEN
def test_the_base_model_does_not_know_the_identity(tutorial_workspace):
    ws = tutorial_workspace
    chat = wizard_cli(
        "--workspace", str(ws.root), "chat", str(ws.demo_model_dir), "--prompt", "请介绍一下你自己"
    )
    assert chat.returncode == 0, chat.stderr
    assert TUTORIAL_ANSWER not in chat.stdout


@GOLDEN
def test_first_answer_comes_from_the_checkpoint_before_the_merge(tutorial_workspace):
    """run-all answers from the run's checkpoint (LoRA folded into the base in memory) before
    it converts and merges; `chat --run` does the same later."""
    ws = tutorial_workspace
    out = ws.run_all_output.splitlines()
    first = next(i for i, line in enumerate(out) if line.startswith("chat ("))
    merge = next(i for i, line in enumerate(out) if line.startswith("merge: "))
    assert first < merge and "from the checkpoint" in out[first]
    assert TUTORIAL_ANSWER in out[first + 1]
    runs = json.loads(wizard_cli("--workspace", str(ws.root), "runs", "--json").stdout)
    chat = wizard_cli(
        "--workspace", str(ws.root), "chat", "--run", runs[-1]["id"], "--prompt", "请介绍一下你自己"
    )
    assert chat.returncode == 0, chat.stderr
    assert "answering from" in chat.stdout and TUTORIAL_ANSWER in chat.stdout
