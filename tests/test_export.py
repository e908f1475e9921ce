"""engine.export: checks before merging (fast) and a real merge of a trained demo run (slow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from merge_chat_support import GOLDEN, IDENTITY_PROMPT, NAME, demo_model, merged_workspace
from train_support import write_checkpoint

from engine.errors import WizardError
from engine.export import (
    check_free_space,
    convert_and_merge,
    estimate_merged_bytes,
    latest_merged,
    move_aside,
    resolve_source,
)


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("h5-export")


def _ws_with_checkpoint(root: Path, model: Path):
    """A prepared workspace (real config) plus a checkpoint file where a run would put it."""
    from train_support import prepare_workspace

    ws = prepare_workspace(root, model_dir=model)
    cfg = ws.path(ws.load_state().choices["config"])
    pth = ws.work_dirs / cfg.stem / "iter_2.pth"
    pth.parent.mkdir(parents=True)
    write_checkpoint(pth)
    return ws, cfg, pth


def test_refuses_a_4bit_base(tmp_path, model_root):
    model = tmp_path / "quantized-model"
    shutil.copytree(demo_model(model_root), model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["quantization_config"] = {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "quant_method": "bitsandbytes",
    }
    (model / "config.json").write_text(json.dumps(cfg))
    ws, config, pth = _ws_with_checkpoint(tmp_path / "ws", model)
    with pytest.raises(WizardError) as err:
        convert_and_merge(ws, checkpoint=pth, config=config, base_model=model)
    assert "4-bit" in str(err.value) and "quantization_config" in str(err.value)
    assert "full-precision" in str(err.value)
    assert not ws.merged_dir.exists() and not ws.hf_dir.exists()


def test_refuses_when_the_disk_is_too_small(tmp_path, model_root):
    model = demo_model(model_root)
    ws, config, pth = _ws_with_checkpoint(tmp_path / "ws", model)
    ws.merged_dir.mkdir()
    (ws.merged_dir / "keep.txt").write_text("mine")
    with pytest.raises(WizardError) as err:
        convert_and_merge(ws, checkpoint=pth, config=config, disk_limit=1000)
    assert "not enough disk" in str(err.value)
    # nothing was touched: the old merged/ is still where it was, no hf/ made
    assert (ws.merged_dir / "keep.txt").read_text() == "mine"
    assert not ws.hf_dir.exists()


def test_size_check_and_estimate(tmp_path, model_root):
    model = demo_model(model_root)
    need = estimate_merged_bytes(model)
    weights = (model / "model.safetensors").stat().st_size
    assert weights // 2 < need < weights  # the float32 demo base merges into float16
    assert check_free_space(tmp_path, need, limit=need) == need
    with pytest.raises(WizardError, match="needs"):
        check_free_space(tmp_path, need, limit=need - 1)


def test_source_from_checkpoint_reads_the_config(tmp_path, model_root):
    model = demo_model(model_root)
    ws, config, pth = _ws_with_checkpoint(tmp_path / "ws", model)
    src = resolve_source(ws, checkpoint=pth, config=config)
    assert src.prompt_template == "internlm2_chat"
    assert src.base_model == model.resolve()
    with pytest.raises(WizardError, match="no training runs"):
        resolve_source(ws)


def test_move_aside_keeps_the_old_folder(tmp_path):
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "a").write_text("x")
    moved = move_aside(folder)
    assert not folder.exists() and (moved / "a").read_text() == "x"
    assert moved.name.startswith("merged.previous-")
    assert move_aside(folder) is None


@pytest.mark.slow
@GOLDEN
def test_merge_of_a_demo_run_loads_and_answers(model_root):
    from engine.chat.base import load_engine

    ws, calls = merged_workspace(model_root)
    phases = [p for p, _ in calls]
    for phase in ("convert", "merge", "save", "check", "done"):
        assert phase in phases, phases
    assert (
        phases.index("convert")
        < phases.index("merge")
        < phases.index("save")
        < phases.index("check")
    )
    merged = ws.merged_dir
    assert latest_merged(ws) == merged
    assert list(merged.glob("*.safetensors")) and not list(merged.glob("pytorch_model*.bin"))
    assert (ws.hf_dir / "adapter_config.json").is_file()
    info = json.loads((merged / "xtuner_wizard.json").read_text())
    assert info["prompt_template"] == "internlm2_chat" and info["load_check"]["parameters"] > 1e6
    assert "merge" in ws.load_state().done
    previous = [p for p in ws.root.glob("merged.previous*") if (p / "old-marker.txt").exists()]
    assert previous, "the older merged/ was not kept"
    engine = load_engine("hf", merged)
    answer = engine.chat([{"role": "user", "content": IDENTITY_PROMPT}], max_new_tokens=60)
    assert NAME in answer
