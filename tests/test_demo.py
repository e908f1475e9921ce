"""The offline demo model: built, deterministic, loads like internlm2-chat-1_8b, learns."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from engine import demo
from engine.cli import main as cli_main
from engine.workspace import Workspace

ANSWER = "我是伍鲜同志的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"


def shared_demo_model(tmp_path_factory) -> Path:
    """One demo model per test session (every module asking for it reuses the build)."""
    ws = Workspace(tmp_path_factory.getbasetemp() / "shared-demo-ws").ensure()
    return demo.ensure_demo_model(ws)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    return shared_demo_model(tmp_path_factory)


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def test_folder_has_what_a_hf_model_folder_needs(demo_dir: Path):
    names = {p.name for p in demo_dir.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "configuration_internlm2.py",
        "modeling_internlm2.py",
        demo.MARKER,
    } <= names
    config = json.loads((demo_dir / "config.json").read_text())
    assert config["architectures"] == ["InternLM2ForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_internlm2.InternLM2ForCausalLM"
    assert config["initializer_range"] == 0.1
    assert str(demo_dir) not in (demo_dir / "config.json").read_text()  # no machine paths
    # The modelling code is xtuner's own, byte for byte.
    from engine.xtuner_env import xtuner_package_dir

    src = xtuner_package_dir() / "_lite" / "modelings" / "internlm2"
    for name in demo.REMOTE_CODE_FILES:
        assert (demo_dir / name).read_bytes() == (src / name).read_bytes()
    assert demo.is_complete(demo_dir)


def test_same_seed_gives_the_same_bytes(demo_dir: Path, tmp_path: Path):
    again = demo.build_demo_model(tmp_path / "again", seed=0)
    assert _digests(again) == _digests(demo_dir)


def test_loads_with_trust_remote_code_and_speaks_internlm2_chat(demo_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from engine.xtuner_env import ensure_xtuner_importable_here

    ensure_xtuner_importable_here()
    from xtuner.utils import PROMPT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(demo_dir, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(demo_dir, trust_remote_code=True)
    assert type(model).__name__ == "InternLM2ForCausalLM"
    assert type(model).__module__.endswith("modeling_internlm2")
    assert model.config.vocab_size == len(tok)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<|pad|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tok.unk_token_id
    gen = GenerationConfig.from_pretrained(demo_dir)
    assert set(gen.eos_token_id) == {tok.eos_token_id, im_end}

    # The chat template gives exactly xtuner's internlm2_chat prompt after the bos token.
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "请介绍一下你自己"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    xtuner_prompt = PROMPT_TEMPLATE.internlm2_chat["INSTRUCTION"].format(
        input="请介绍一下你自己", round=1
    )
    assert prompt == "<s>" + xtuner_prompt
    ids = tok.encode(prompt, add_special_tokens=False)
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2  # one token each
    # Chinese, English and an unseen emoji survive a round trip (byte-level BPE).
    for text in (ANSWER, "Please introduce yourself", "你好🙂"):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert len(tok.encode(ANSWER, add_special_tokens=False)) < len(ANSWER) // 2
    with torch.no_grad():
        out = model(torch.tensor([ids]))
    assert out.logits.shape == (1, len(ids), len(tok))


def test_learns_the_answer_in_twenty_steps(demo_dir: Path):
    """Full fine-tuning on one conversation, lr 2e-3: the greedy answer becomes exact."""
    import torch

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only fight over a busy machine
    try:
        _learn(demo_dir)
    finally:
        torch.set_num_threads(threads)


def _learn(demo_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_dir, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(demo_dir, trust_remote_code=True)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "请介绍一下你自己"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    p_ids = tok.encode(prompt, add_special_tokens=False)
    a_ids = tok.encode(ANSWER + "<|im_end|>", add_special_tokens=False)
    ids = torch.tensor([p_ids + a_ids])
    labels = torch.tensor([[-100] * len(p_ids) + a_ids])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    first = None
    for _ in range(20):
        loss = model(input_ids=ids, labels=labels).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10
    model.eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([p_ids]), max_new_tokens=len(a_ids) + 4, do_sample=False)
    text = tok.decode(out[0, len(p_ids) :], skip_special_tokens=False)
    assert text.startswith(ANSWER + "<|im_end|>")


def test_ensure_builds_once_and_repairs_an_incomplete_folder(tmp_path: Path):
    ws = Workspace(tmp_path / "ws").ensure()
    stages: list[tuple[int, int, str]] = []
    path = demo.ensure_demo_model(ws, on_progress=lambda *a: stages.append(a))
    assert path == ws.demo_model_dir and demo.is_complete(path)
    assert [s for s, _, _ in stages] == [0, 1, 2, 3, 4] and stages[-1][2] == "done"
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".demo-model")]  # no temp left

    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert demo.ensure_demo_model(ws) == path
    assert weights.stat().st_mtime_ns == before  # complete: not rebuilt

    # A build cut short (no marker, weights missing) is rebuilt.
    (path / demo.MARKER).unlink()
    weights.unlink()
    demo.ensure_demo_model(ws)
    assert demo.is_complete(path) and weights.exists()


def test_cli_builds_into_a_folder_and_refuses_a_non_empty_one(tmp_path: Path, capsys):
    target = tmp_path / "m"
    assert cli_main(["demo-model", str(target), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "InternLM2ForCausalLM" in out and str(target) in out
    assert demo.describe(target)["seed"] == 1
    assert cli_main(["demo-model", str(target)]) == 0  # complete already: nothing to do
    assert "already built" in capsys.readouterr().out

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert cli_main(["demo-model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and str(other) in err and "Traceback" not in err
    assert os.listdir(other) == ["notes.txt"]


def test_a_killed_builds_temp_folder_is_removed_by_the_next(tmp_path: Path):
    """A wizard killed mid-build leaves ``.demo-model.XXXX/``; the next build removes it, but not
    a folder a build running now may be writing (touched recently)."""
    target = tmp_path / "demo-model"
    old = tmp_path / ".demo-model.k1ll3d"
    (old / "m").mkdir(parents=True)
    (old / "m" / "config.json").write_text("{}")
    os.utime(old, (0, 0))
    running = tmp_path / ".demo-model.n0w"
    running.mkdir()
    assert demo.remove_stale_builds(target) == [old]
    assert not old.exists() and running.exists()
