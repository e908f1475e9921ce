"""Chat engines and prompt templates on the real demo model (CPU): no training needed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from merge_chat_support import demo_model

from engine.chat.base import IncrementalDecoder, load_engine
from engine.chat.templates import (
    config_settings,
    get_template,
    resolve_template,
    template_names,
)
from engine.errors import WizardError


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return demo_model(tmp_path_factory.mktemp("h5-chat"))


@pytest.fixture(scope="module")
def hf(model):
    return load_engine("hf", model, template="internlm2_chat")


def test_templates_come_from_xtuner_source():
    names = template_names()
    assert "internlm2_chat" in names and "qwen_chat" in names and len(names) > 10
    t = get_template("internlm2_chat")
    assert t.stop_words == ("<|im_end|>",) and t.suffix == "<|im_end|>"
    text = t.render(
        [
            {"role": "user", "content": "你好"},
            {"role": "assistant", "content": "我是小助手"},
            {"role": "user", "content": "再说一遍"},
        ],
        system="S",
    )
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n"
        "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
        "我是小助手<|im_end|>\n"
        "<|im_start|>user\n再说一遍<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(WizardError, match="unknown prompt template"):
        get_template("nope")


def test_template_read_from_a_config_without_running_it(tmp_path):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "raise SystemExit('never executed')\n"
        "from xtuner.utils import PROMPT_TEMPLATE, SYSTEM_TEMPLATE\n"
        "pretrained_model_name_or_path = '/models/internlm2-chat-1_8b'\n"
        "prompt_template = PROMPT_TEMPLATE.qwen_chat\n"
        "SYSTEM = SYSTEM_TEMPLATE.alpaca\n"
    )
    s = config_settings(cfg)
    assert s["prompt_template"] == "qwen_chat"
    assert s["pretrained_model_name_or_path"] == "/models/internlm2-chat-1_8b"
    assert "instruction" in s["SYSTEM"].lower()
    assert resolve_template(str(cfg)).name == "qwen_chat"


def test_prompt_ids_start_with_bos_and_stop_ids(hf):
    tok = hf.tokenizer
    ids = hf.template.encode(tok, [{"role": "user", "content": "hi"}])
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert hf.stop_token_ids() == {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}


def test_incremental_decoder_gives_back_the_text(hf):
    tok = hf.tokenizer
    text = "我是伍鲜同志的小助手\nhello world"
    ids = tok.encode(text, add_special_tokens=False)
    dec = IncrementalDecoder(tok)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == text
    assert sum(bool(p) for p in pieces) > 3  # streamed in pieces, not at the end


def test_hf_streams_pieces_and_is_greedy(hf):
    msgs = [{"role": "user", "content": "请介绍一下你自己"}]
    pieces = list(hf.stream_chat(msgs, max_new_tokens=24))
    assert len(pieces) > 1
    assert "".join(pieces) == hf.chat(msgs, max_new_tokens=24)  # deterministic
    assert 0 < hf.stats.new_tokens <= 24 and hf.stats.time_to_first_token is not None


def test_stop_event_ends_the_answer(hf):
    stop = threading.Event()
    got = []
    for tok in hf.generate_tokens(
        [1, 3, 10, 11, 12], max_new_tokens=200, stop_event=stop, ignore_eos=True
    ):
        got.append(tok)
        if len(got) == 3:
            stop.set()
    # not one token after the stop, however far the generation thread ran ahead (it once
    # yielded 5 here on a loaded machine)
    assert len(got) == 3 and hf.stats.stopped


def test_fast_engine_matches_transformers_greedily(model, hf):
    fast = load_engine("fast", model, template="internlm2_chat", max_len=512)
    prompt = hf.template.encode(hf.tokenizer, [{"role": "user", "content": "你在实战营做什么"}])
    want = list(hf.generate_tokens(prompt, max_new_tokens=20, ignore_eos=True))
    got = list(fast.generate_tokens(prompt, max_new_tokens=20, ignore_eos=True))
    assert got == want
    stop = threading.Event()
    stop.set()
    assert list(fast.generate_tokens(prompt, max_new_tokens=20, stop_event=stop)) == []
    assert fast.stats.stopped


def test_engine_errors_are_one_line(tmp_path, model):
    with pytest.raises(WizardError, match="unknown chat engine"):
        load_engine("vllm", model)
    with pytest.raises(WizardError, match="model folder not found"):
        load_engine("hf", tmp_path / "missing")
    with pytest.raises(WizardError, match="no adapter_config.json"):
        load_engine("hf", model, adapter=tmp_path)
    try:
        import lmdeploy  # noqa: F401
    except ImportError:
        with pytest.raises(WizardError, match="lmdeploy engine is not installed"):
            load_engine("lmdeploy", model)
