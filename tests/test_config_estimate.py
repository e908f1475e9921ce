"""The memory/speed estimate: a function of sizes, checked against the H200 measurements."""

from __future__ import annotations

import json

import pytest

from engine.config.estimate import (
    INTERNLM2_CHAT_1_8B,
    DatasetSize,
    Plan,
    dataset_size,
    estimate_run,
    iterations_per_epoch,
    peak_memory,
    pick_settings,
    tokens_per_second,
    warmup_warning,
)

# docs/notes/xtuner-on-h200.md: random 1.89B InternLM2, packed 2048, LoRA r=64, one H200
H200_TABLE = [
    # quant, batch, attention, ckpt, peak GiB, tokens/s
    ("nf4", 1, "eager", True, 6.1, 7863),
    ("nf4", 1, "sdpa", True, 6.1, 7327),
    ("nf4", 1, "eager", False, 23.0, 10114),
    ("nf4", 8, "sdpa", True, 24.0, 17043),
    (None, 1, "eager", True, 11.0, 9759),
    (None, 8, "eager", True, 29.0, 13557),
    (None, 8, "sdpa", True, 28.9, 21774),
    (None, 8, "sdpa", False, 77.0, 30130),
]


def test_model_size_is_internlm2_chat_1_8b():
    assert INTERNLM2_CHAT_1_8B.params == pytest.approx(1.89e9, rel=0.01)


@pytest.mark.parametrize("quant,batch,attn,ckpt,peak,tps", H200_TABLE)
def test_estimate_is_calibrated_on_the_h200_table(quant, batch, attn, ckpt, peak, tps):
    plan = Plan(quant, "float16" if quant else "bfloat16", 64, batch, 2048, ckpt, attn)
    assert peak_memory(INTERNLM2_CHAT_1_8B, plan).total == pytest.approx(peak, rel=0.12)
    assert tokens_per_second(INTERNLM2_CHAT_1_8B, plan, "NVIDIA H200") == pytest.approx(
        tps, rel=0.2
    )


def test_picks_qlora_on_8_gb_and_bf16_lora_on_141_gb():
    small = pick_settings([("NVIDIA GeForce RTX 3070", 8.0)], INTERNLM2_CHAT_1_8B)
    assert small is not None and small.fits
    assert small.plan.quantization == "nf4" and small.plan.batch_size == 1
    assert small.plan.checkpointing and small.accumulative_counts == 16

    big = pick_settings([("NVIDIA H200", 141.0)], INTERNLM2_CHAT_1_8B)
    assert big is not None and big.fits
    assert big.plan.quantization is None and big.plan.dtype == "bfloat16"
    assert big.plan.attention == "sdpa" and not big.plan.checkpointing
    assert big.plan.batch_size >= 8
    assert big.plan.batch_size * big.accumulative_counts == 16  # effective batch kept


def test_no_gpu_means_no_pick_and_too_small_warns():
    assert pick_settings([], INTERNLM2_CHAT_1_8B) is None
    tiny = pick_settings([("old card", 4.0)], INTERNLM2_CHAT_1_8B)
    assert tiny is not None and not tiny.fits and "nothing fits" in tiny.reason
    run = estimate_run(
        INTERNLM2_CHAT_1_8B,
        Plan(batch_size=8, checkpointing=False),
        gpu=("NVIDIA GeForce RTX 3070", 8.0),
    )
    assert run.warnings and "will not fit" in run.warnings[0]


def test_iterations_of_the_tutorials_dataset(tmp_path):
    # the tutorial's job: 16,002 conversations, 3 epochs -> 730-1056 iterations at batch 1
    a = {
        "conversation": [
            {
                "input": "请介绍一下你自己",
                "output": "我是伍鲜同志的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦",
            }
        ]
    }
    b = {
        "conversation": [
            {
                "input": "你在实战营做什么",
                "output": "我在这里帮助伍鲜同志完成XTuner微调个人小助手的任务",
            }
        ]
    }
    path = tmp_path / "assistant.json"
    path.write_text(json.dumps([a, b] * 8001, ensure_ascii=False), encoding="utf-8")
    size = dataset_size(path)
    assert size.records == 16002
    per_epoch = iterations_per_epoch(
        size.records, size.tokens, max_length=2048, batch_size=1, pack=True
    )
    assert 730 <= 3 * per_epoch <= 1056
    run = estimate_run(INTERNLM2_CHAT_1_8B, Plan(), gpu=("NVIDIA H200", 141.0), dataset=size)
    assert run.total_iters == 3 * per_epoch and run.seconds and not run.warnings
    assert iterations_per_epoch(16002, 0, max_length=2048, batch_size=4, pack=False) == 4001


def test_warns_when_the_warm_up_rounds_below_two_iterations():
    """xtuner's warm-up is 0.03 x 3 epochs; mmengine truncates it to whole iterations. On the
    H200's 2-GPU runs 4 iterations an epoch crashed at start and 8 trained at lr x 1e-5."""
    plan = Plan(batch_size=8, checkpointing=False)
    gpu = ("NVIDIA H200", 141.0)
    tiny = DatasetSize(records=102, tokens=102 * 60, exact=False)  # 3 packed samples
    run = estimate_run(INTERNLM2_CHAT_1_8B, plan, gpu=gpu, dataset=tiny, warmup_ratio=0.03)
    assert run.iters_per_epoch <= 11  # int(0.09 x 11) = 0
    assert any("warm-up comes to 0 iteration" in w and "fails at start" in w for w in run.warnings)
    capped = estimate_run(
        INTERNLM2_CHAT_1_8B, plan, gpu=gpu, dataset=tiny, warmup_ratio=0.03, max_iters=30
    )
    assert not any("warm-up" in w for w in capped.warnings)
    assert "lr x 1e-5" in warmup_warning(0.03, 3, 12)  # int(1.08) = 1
    assert warmup_warning(0.03, 3, 23) is None  # int(2.07) = 2
