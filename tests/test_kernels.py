"""engine/kernels.py: the fused-kernel patches xtuner's model gets in the lora profile (issue 15).

The kernels are Triton (CUDA only): here, on the CPU, what can be checked without them: the
output head's LoRA folds exactly into one weight (what the fused loss multiplies by), it
refuses to fold where that would be inexact, the patches find InternLM2's modules behind
peft, and a patched model on the CPU computes exactly what it did (each patch falls back).
"""

from __future__ import annotations

import pytest

from engine import kernels


def _tiny_internlm2(dropout: float = 0.0):
    import torch
    from peft import LoraConfig, get_peft_model
    from xtuner._lite.modelings.internlm2.configuration_internlm2 import InternLM2Config
    from xtuner._lite.modelings.internlm2.modeling_internlm2 import InternLM2ForCausalLM
    from xtuner.model.utils import find_all_linear_names

    torch.manual_seed(0)
    config = InternLM2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    model = InternLM2ForCausalLM(config)
    targets = find_all_linear_names(model)
    assert "output" in targets  # xtuner puts LoRA on InternLM2's head too
    lora = LoraConfig(
        r=4, lora_alpha=16, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, lora)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)  # peft starts B at zero: nothing to fold
    return peft_model


def _head(peft_model):
    return next(m for n, m in peft_model.named_modules() if n.endswith(".output"))


def test_the_heads_lora_folds_into_one_weight():
    import torch

    model = _tiny_internlm2()
    head = _head(model)
    weight = kernels._lora_head_weight(head)
    x = torch.randn(5, 32)
    assert torch.allclose(head(x), x @ weight.T, atol=1e-5)
    assert weight.requires_grad  # the loss's gradient reaches lora_A and lora_B through it
    weight.sum().backward()
    assert head.lora_A["default"].weight.grad is not None
    assert head.base_layer.weight.grad is None  # the base stays frozen


def test_no_fold_where_it_would_not_be_exact():
    model = _tiny_internlm2(dropout=0.1)  # dropout on the head's input: x W + s B A drop(x)
    assert kernels._lora_head_weight(_head(model)) is None


def test_patches_find_internlm2_behind_peft_and_change_nothing_on_the_cpu():
    import torch

    model = _tiny_internlm2()
    ids = torch.randint(0, 64, (2, 12))
    before = model(input_ids=ids, labels=ids).loss
    counts = kernels.patch_model(model, rope=False)
    # 2 layers x 2 norms + the final norm; 2 MLPs; the model's forward; 2 x 5 linears + head
    assert counts == {
        "rms_norm": 5,
        "swiglu": 2,
        "rope": 0,
        "fused_ce": 1,
        "lora_cast": 11,
        "lora_addmm": 11,
    }
    after = model(input_ids=ids, labels=ids).loss
    assert torch.equal(before, after)  # on the CPU every patch falls back to the original
    off = _tiny_internlm2()
    assert kernels.patch_model(
        off,
        rms_norm=False,
        swiglu=False,
        fused_ce=False,
        rope=False,
        lora_cast=False,
        lora_addmm=False,
    ) == dict.fromkeys(kernels.PATCHES, 0)


def _lora_linears(peft_model):
    return [m for m in peft_model.modules() if kernels._lora_addmm_ready(m) is not None]


def test_lora_addmm_computes_what_peft_computes_forward_and_backward():
    import torch

    model = _tiny_internlm2()
    layers = _lora_linears(model)
    assert len(layers) == 11  # 2 layers x 5 linears + the head
    for layer in layers:
        x = torch.randn(2, 7, layer.in_features, requires_grad=True)
        want = layer(x)  # peft's own forward
        gx, ga, gb = torch.autograd.grad(
            want.square().sum(),
            (x, layer.lora_A["default"].weight, layer.lora_B["default"].weight),
        )
        got = kernels.lora_addmm(layer, x, "default")
        hx, ha, hb = torch.autograd.grad(
            got.square().sum(),
            (x, layer.lora_A["default"].weight, layer.lora_B["default"].weight),
        )
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
        for a, b in ((gx, hx), (ga, ha), (gb, hb)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_lora_addmm_is_refused_where_peft_does_more():
    model = _tiny_internlm2(dropout=0.1)  # dropout on every LoRA input: peft's forward runs
    assert _lora_linears(model) == []


def test_install_is_off_without_cuda(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine")
    monkeypatch.setattr(kernels, "_INSTALLED", {})
    assert kernels.available() == "no CUDA"
    assert kernels.install() is False


# -- the setting: one line of the rendered config -----------------------------------------------
def _render(tmp_path, set_args=()):
    import json

    from engine.config import render_config
    from engine.config.profiles import Gpu, Hardware

    model = tmp_path / "internlm2-chat-1_8b"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["InternLM2ForCausalLM"],
                "model_type": "internlm2",
                "hidden_size": 2048,
                "num_hidden_layers": 24,
                "intermediate_size": 8192,
                "vocab_size": 92544,
                "num_attention_heads": 16,
                "num_key_value_heads": 8,
            }
        )
    )
    data = tmp_path / "assistant.json"
    data.write_text(
        json.dumps([{"conversation": [{"input": "你是谁", "output": "我是小助手"}]}] * 4),
        encoding="utf-8",
    )
    return render_config(
        model_path=model,
        data_path=data,
        profile="auto",
        hardware=Hardware([Gpu("NVIDIA H200", 139.8)], "test"),
        set_args=list(set_args),
    )


def test_fused_kernels_is_one_line_that_mmengine_loads(tmp_path, monkeypatch):
    from mmengine.config import Config

    from engine.config.settings import FUSED_KERNELS_PATCH

    plain = _render(tmp_path)
    assert plain.settings["fused_kernels"] is False  # not a default until measured on a GPU
    assert FUSED_KERNELS_PATCH not in plain.text
    on = _render(tmp_path, ["fused_kernels=True", "lora_dropout=0.0"])
    assert on.settings["fused_kernels"] is True and on.settings["lora_dropout"] == 0.0
    assert on.text.count(FUSED_KERNELS_PATCH) == 1
    monkeypatch.setattr(kernels, "_INSTALLED", {})
    path = tmp_path / "on.py"
    path.write_text(on.text, encoding="utf-8")
    cfg = Config.fromfile(str(path))  # runs the line: install(), off here (no CUDA)
    assert cfg.model.lora.lora_dropout == 0.0
    assert kernels._INSTALLED == {"on": False}
    off = _render(tmp_path, ["fused_kernels=True", "fused_kernels=False"])
    assert FUSED_KERNELS_PATCH not in off.text and off.settings["fused_kernels"] is False
