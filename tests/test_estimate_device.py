"""The estimate uses the GPU the run will use (every profile but cpu) and the model's own
tokenizer files when they are there."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from engine.config import render_config
from engine.config.api import estimate_for
from engine.config.estimate import dataset_size
from engine.data.generate import IdentityFacts, build_dataset, dumps_dataset

INTERNLM2_1_8B = {
    "model_type": "internlm2",
    "architectures": ["InternLM2ForCausalLM"],
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "intermediate_size": 8192,
    "vocab_size": 92544,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
}


def _model(folder: Path, *, char_tokenizer: bool = False) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(INTERNLM2_1_8B))
    if char_tokenizer:  # one token per character: far more than the ~4 characters/token guess
        from tokenizers import Tokenizer, models, pre_tokenizers

        vocab = {"[UNK]": 0, **{chr(c): i + 1 for i, c in enumerate(range(32, 127))}}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
        tok.save(str(folder / "tokenizer.json"))
    return folder


def test_tutorial_profile_on_an_h200_uses_the_h200(tmp_path, monkeypatch):
    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "NVIDIA H200:141")
    model = _model(tmp_path / "m")
    data = tmp_path / "assistant.json"
    data.write_text(dumps_dataset(build_dataset("tutorial", IdentityFacts(name="Ada")).train))
    rendered = render_config(model_path=str(model), data_path=str(data), profile="tutorial")
    run = estimate_for(rendered, data)
    assert run.gpu == "NVIDIA H200"
    assert run.seconds is not None and run.seconds < 3600, run.summary()


def test_tokens_are_counted_with_the_models_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "none")
    records = [
        {"conversation": [{"input": f"question number {i} " * 20, "output": "answer " * 40}]}
        for i in range(400)
    ]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    model = _model(tmp_path / "m", char_tokenizer=True)
    start = time.monotonic()
    exact = dataset_size(data, model)
    assert time.monotonic() - start < 2.0
    guess = dataset_size(data)
    assert exact.exact and not guess.exact
    chars = sum(
        len(r["conversation"][0]["input"]) + len(r["conversation"][0]["output"]) for r in records
    )
    assert exact.tokens == chars + 12 * len(records)  # one token a character, plus the markers
    # the config's estimate counts with it too
    rendered = render_config(model_path=str(model), data_path=str(data), profile="cpu")
    with_tok = estimate_for(rendered, data).total_iters
    (model / "tokenizer.json").unlink()
    without = estimate_for(rendered, data).total_iters
    assert with_tok > 2 * without


def _iterations(out: str) -> int:
    (line,) = [ln for ln in out.splitlines() if "estimate:" in ln]
    return int(re.search(r"(\d+) iterations", line).group(1))


def test_config_counts_the_iterations_of_the_launch_not_of_the_gpus_found(
    workspace, tmp_path, monkeypatch, capsys
):
    """Two GPUs here, but `train` starts one process unless the Config step chose more: the
    estimate's iterations are the ones `train` runs."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_selection import fake_model

    from engine.cli import main

    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "NVIDIA H200:141,NVIDIA H200:141")
    model = fake_model(tmp_path / "m")
    records = [{"conversation": [{"input": "你好" * 20, "output": "我是小助手" * 20}]}] * 400
    workspace.data_dir.mkdir()
    workspace.dataset_path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    args = ["-w", str(workspace.root), "config", "--model", str(model), "--profile", "lora"]
    assert main([*args, "--force"]) == 0
    one = _iterations(capsys.readouterr().out)
    from engine.runs.launch import plan_from_choices

    assert plan_from_choices(workspace) is None  # what train launches: one process
    workspace.set_choice("gpus", 2)  # the Config step's launch choice
    assert main([*args, "--force"]) == 0
    two = _iterations(capsys.readouterr().out)
    # 3 epochs of S packed samples: 3 x S for one process, 3 x ceil(S / 2) for two
    assert one % 3 == 0 and two == 3 * -(-one // 3 // 2) and one > two, (one, two)
    rendered = render_config(
        model_path=str(model), data_path=str(workspace.dataset_path), profile="lora"
    )
    assert estimate_for(rendered, workspace.dataset_path).total_iters == one
    assert estimate_for(rendered, workspace.dataset_path, gpus=2).total_iters == two
