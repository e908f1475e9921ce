"""The second offline demo model, a tiny Qwen2: built, loaded without remote code, spoken to in
XTuner's qwen_chat layout, rendered with the Qwen1.5 built-in configs under every profile, and
decoded by the fast engine token for token like transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import waits

from engine import demo
from engine.cli import main as cli_main
from engine.workspace import Workspace

ANSWER = "我是伍鲜同志的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"


@pytest.fixture(scope="module")
def qwen_ws(tmp_path_factory) -> Workspace:
    """One workspace with demo-qwen2/ per session, built through the CLI as a user would."""
    root = tmp_path_factory.getbasetemp() / "shared-demo-qwen2-ws"
    ws = Workspace(root).ensure()
    if not demo.is_complete(demo.demo_dir(ws, "qwen2")):
        assert cli_main(["--workspace", str(root), "demo-model", "--arch", "qwen2"]) == 0
    return ws


@pytest.fixture(scope="module")
def qwen_dir(qwen_ws: Workspace) -> Path:
    return demo.demo_dir(qwen_ws, "qwen2")


def test_built_as_a_transformers_qwen2_with_qwens_tokens(qwen_ws: Workspace, qwen_dir: Path):
    assert qwen_dir == qwen_ws.root / "demo-qwen2" and demo.is_complete(qwen_dir)
    cfg = json.loads((qwen_dir / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"] and cfg["model_type"] == "qwen2"
    assert "auto_map" not in cfg and not list(qwen_dir.glob("*.py"))  # no remote code
    assert cfg["num_key_value_heads"] == 2 < cfg["num_attention_heads"]  # GQA
    assert demo.describe(qwen_dir)["architecture"] == "Qwen2ForCausalLM"
    # the InternLM2 demo model is another folder, not built by this
    assert not demo.is_complete(qwen_ws.demo_model_dir)
    assert demo.choice_dir(qwen_ws, "demo-qwen2") == qwen_dir
    assert demo.choice_dir(qwen_ws, "demo") == qwen_ws.demo_model_dir
    assert demo.choice_dir(qwen_ws, "/some/path") is None


def test_loads_without_remote_code_and_xtuner_lays_out_qwen_chat(qwen_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.xtuner_env import ensure_xtuner_importable_here

    ensure_xtuner_importable_here()
    from xtuner.dataset.utils import get_bos_eos_token_ids
    from xtuner.utils import PROMPT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(qwen_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(qwen_dir, trust_remote_code=False)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert type(tok).__name__ == "Qwen2TokenizerFast"
    assert tok.bos_token is None and tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>"
    # xtuner's encode_fn adds no bos for a Qwen tokenizer and ends answers with <|im_end|>
    bos, eos = get_bos_eos_token_ids(tok)
    assert bos == [] and eos == [tok.convert_tokens_to_ids("<|im_end|>")]
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "请介绍一下你自己"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt == PROMPT_TEMPLATE.qwen_chat["INSTRUCTION"].format(input="请介绍一下你自己")
    for text in (ANSWER, "Please introduce yourself", "你好🙂"):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    ids = tok.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        assert model(torch.tensor([ids])).logits.shape == (1, len(ids), len(tok))


def test_fast_engine_gives_transformers_greedy_tokens(qwen_dir: Path):
    """The fast engine's Llama/Qwen2 branch (q/k/v biases, grouped KV heads) in fp32 on the CPU."""
    from engine.chat.base import load_engine
    from engine.chat.fast import FastEngine

    hf = load_engine("hf", qwen_dir, device="cpu")
    assert hf.template.name == "qwen_chat"  # the family's template, not InternLM2's
    fast = load_engine("fast", qwen_dir, device="cpu", max_len=256)
    assert isinstance(fast, FastEngine) and fast.kv_heads == 2 and fast.groups == 2
    assert fast.layers[0].bqkv is not None  # Qwen2's q/k/v biases were taken
    for question in ("请介绍一下你自己", "Who are you?"):
        prompt = hf.template.encode(hf.tokenizer, [{"role": "user", "content": question}])
        assert prompt[0] != hf.tokenizer.bos_token_id  # Qwen: no bos
        want = list(hf.generate_tokens(prompt, max_new_tokens=24, ignore_eos=True))
        got = list(fast.generate_tokens(prompt, max_new_tokens=24, ignore_eos=True))
        assert got == want and len(got) == 24


@pytest.mark.parametrize("profile", ["auto", "tutorial", "qlora", "lora", "cpu"])
def test_every_profile_renders_the_qwen_config_for_it(qwen_dir: Path, tmp_path: Path, profile):
    from engine.config import render_config
    from engine.config.profiles import Gpu, Hardware

    data = tmp_path / "assistant.json"
    data.write_text("[]")
    hw = Hardware([Gpu("NVIDIA H200", 139.8)], "test") if profile != "cpu" else Hardware()
    rendered = render_config(model_path=qwen_dir, data_path=data, profile=profile, hardware=hw)
    assert rendered.base_name == "qwen1_5_0_5b_chat_qlora_alpaca_e3"
    assert "prompt_template = PROMPT_TEMPLATE.qwen_chat" in rendered.text
    assert f'pretrained_model_name_or_path = "{qwen_dir}"' in rendered.text
    compile(rendered.text, rendered.default_filename, "exec")  # valid Python
    assert rendered.profile in ("cpu", "tutorial", "qlora", "lora")


def test_config_and_data_commands_take_demo_qwen2(qwen_ws: Workspace, capsys):
    ws = ["--workspace", str(qwen_ws.root)]
    assert cli_main([*ws, "data", "generate", "--name", "伍鲜同志", "--n", "4", "--force"]) == 0
    data = str(qwen_ws.dataset_path)
    assert cli_main([*ws, "data", "validate", data, "--model", "demo-qwen2"]) == 0
    assert cli_main([*ws, "config", "--model", "demo-qwen2", "--profile", "cpu", "--force"]) == 0
    out = capsys.readouterr().out
    assert "wrote qwen1_5_0_5b_chat_qlora_alpaca_e3_copy.py" in out
    assert qwen_ws.load_state().choices["model"] == "demo-qwen2"
    text = (qwen_ws.root / "qwen1_5_0_5b_chat_qlora_alpaca_e3_copy.py").read_text()
    assert "PROMPT_TEMPLATE.qwen_chat" in text and str(qwen_ws.root / "demo-qwen2") in text


@pytest.mark.long
def test_run_all_on_demo_qwen2_answers_the_identity(tmp_path: Path):
    """A second whole real run (minutes on a CPU): only in `make test-all`."""
    from conftest import TUTORIAL_ANSWER, TUTORIAL_NAME, wizard_cli

    root = tmp_path / "ws"
    done = wizard_cli(
        "--workspace", str(root), "run-all", "--name", TUTORIAL_NAME, "--model", "demo-qwen2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "config: wrote qwen1_5_0_5b_chat_qlora_alpaca_e3_copy.py" in done.stdout
    assert f"chat: {TUTORIAL_ANSWER}" in done.stdout


async def test_config_pane_proposes_the_models_family(qwen_dir: Path, tmp_path: Path):
    """The Config step, with no base chosen yet, starts from the Qwen2 model's fits."""
    from textual.widgets import OptionList

    from tui.app import WizardApp

    ws = Workspace(tmp_path / "ws").ensure()
    ws.data_dir.mkdir()
    rec = {"conversation": [{"input": "请介绍一下你自己", "output": ANSWER}]}
    ws.dataset_path.write_text(json.dumps([rec] * 8, ensure_ascii=False), encoding="utf-8")
    ws.set_choice("model", str(qwen_dir))
    ws.set_choice("profile", "cpu")
    ws.update_state(current_step="config")
    app = WizardApp(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await waits.settle(pilot)
        pane = app.query_one("#config")
        assert pane._base == "qwen1_5_0_5b_chat_qlora_alpaca_e3"
        result = pane.last_result
        assert result is not None and not result.error, result and result.error
        assert result.rendered.base_name == "qwen1_5_0_5b_chat_qlora_alpaca_e3"
        assert "PROMPT_TEMPLATE.qwen_chat" in result.rendered.text
        olist = app.query_one("#base-list", OptionList)
        first = [str(olist.get_option_at_index(i).id) for i in range(3)]
        assert all(n.startswith("qwen1_5_") and "_chat_" in n for n in first), first
