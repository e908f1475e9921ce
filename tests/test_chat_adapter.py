"""Answering from a run's checkpoint: LoRA weights folded into the base, engine ``auto``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.chat.adapter import fold_lora, load_checkpoint_state, lora_pairs
from engine.chat.base import resolve_engine
from engine.errors import WizardError


class _Tiny:
    """A model with the named linears xtuner's LoRA targets (built lazily: torch)."""

    @staticmethod
    def build():
        import torch

        torch.manual_seed(0)

        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.wqkv = torch.nn.Linear(8, 12, bias=False)
                self.wo = torch.nn.Linear(8, 8, bias=False)

            def forward(self, x):
                return self.wo(self.wqkv(x)[..., :8])

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = torch.nn.ModuleDict({"layers": torch.nn.ModuleList([Block()])})

            def forward(self, x):
                return self.model["layers"][0](x)

        return Model()


def test_folded_lora_equals_peft_merge_and_unload(tmp_path):
    """The checkpoint's keys as xtuner saves them (llm.base_model.model.<module>.lora_A.weight),
    folded with lora_alpha / r: the same weights as peft's own merge."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    base = _Tiny.build()
    peft_model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=4, lora_alpha=16, target_modules=["wqkv", "wo"], lora_dropout=0.0),
    )
    state = {}
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # peft starts B at zero: no change to fold
        if "lora_" in name:
            state["llm." + name.replace(".default", "")] = p.detach().clone()
    pth = tmp_path / "iter_3.pth"
    # mmengine's checkpoint: the state and pickled objects beside it (weights_only refuses them)
    torch.save({"meta": {"cfg": "x"}, "state_dict": state, "message_hub": _Hub()}, pth)
    loaded = load_checkpoint_state(pth, trust_checkpoint=True)  # no workspace's run: vouched for
    pairs = lora_pairs(loaded)
    assert sorted(pairs) == ["model.layers.0.wo", "model.layers.0.wqkv"]
    assert fold_lora(base, pairs, 16 / 4) == 2
    merged = peft_model.merge_and_unload()
    for (n1, p1), (n2, p2) in zip(base.named_parameters(), merged.named_parameters(), strict=True):
        assert n1 == n2 and torch.allclose(p1, p2, atol=1e-6), n1
    x = torch.randn(2, 8)
    assert torch.allclose(base(x), merged(x), atol=1e-5)


class _Hub:
    """Stands in for mmengine's MessageHub in a checkpoint (not a tensor)."""


def test_checkpoint_without_lora_or_with_foreign_modules_is_one_line_error(tmp_path):
    import torch

    model = _Tiny.build()
    with pytest.raises(WizardError, match="no LoRA weights"):
        fold_lora(model, {}, 1.0)
    a, b = torch.zeros(2, 8), torch.zeros(12, 2)
    with pytest.raises(WizardError, match="does not have"):
        fold_lora(model, {"model.layers.7.wqkv": (a, b)}, 1.0)
    with pytest.raises(WizardError, match="without their pair"):
        lora_pairs({"llm.base_model.model.x.lora_A.weight": a})


def _model_dir(tmp_path: Path, **cfg) -> Path:
    d = tmp_path / cfg.get("model_type", "m")
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_auto_engine_is_fast_on_cuda_for_supported_models_else_hf(tmp_path):
    internlm2 = _model_dir(tmp_path, model_type="internlm2", hidden_act="silu")
    gpt2 = _model_dir(tmp_path, model_type="gpt2", activation_function="gelu_new")
    yarn = _model_dir(
        tmp_path, model_type="qwen2", hidden_act="silu", rope_scaling={"type": "yarn"}
    )
    assert resolve_engine("auto", internlm2, "cuda") == "fast"
    assert resolve_engine("auto", internlm2, "cuda:1") == "fast"
    assert resolve_engine("auto", internlm2, "cpu") == "hf"
    assert resolve_engine("auto", gpt2, "cuda") == "hf"
    assert resolve_engine("auto", yarn, "cuda") == "hf"
    assert resolve_engine("hf", internlm2, "cuda") == "hf"  # a named engine stays


def test_chat_cli_defaults_to_auto():
    import argparse

    from engine.cli import chat

    parser = argparse.ArgumentParser()
    chat.register(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["chat", "--prompt", "hi"])
    assert args.engine == "auto" and args.run is None
