"""engine.export: checks before merging (fast) and a real merge of a trained demo run (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from merge_chat_support import (
    GOLDEN,
    IDENTITY_PROMPT,
    NAME,
    demo_model,
    merged_workspace,
    trained_workspace,
)
from train_support import write_checkpoint

import engine.export
from engine.errors import WizardError
from engine.export import (
    MergeFailed,
    check_free_space,
    convert_and_merge,
    estimate_merged_bytes,
    is_complete_merge,
    latest_merged,
    move_aside,
    resolve_source,
)
from engine.merge_child import parse_mark


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
    engine = load_engine("hf", merged, workspace=ws)  # the merge trusted its code there
    answer = engine.chat([{"role": "user", "content": IDENTITY_PROMPT}], max_new_tokens=60)
    assert NAME in answer


def _count_children(monkeypatch) -> list[list[str]]:
    """The argv of every process engine.export starts from now on."""
    started: list[list[str]] = []

    class Counting(subprocess.Popen):
        def __init__(self, args, *rest, **kw):
            started.append(list(args))
            super().__init__(args, *rest, **kw)

    monkeypatch.setattr(subprocess, "Popen", Counting)
    return started


# Stands in for engine.merge_child (same argv, same marker lines): writes what the tools
# would, stops with exit code 1 in the step named by argv[7] ("none": succeeds).
FAKE_CHILD = r"""
import json, os, sys
from pathlib import Path
from engine.merge_child import emit
config, pth, hf, base, out, device, fail_in = sys.argv[1:]
for phase in ("convert", "merge", "check"):
    emit(phase=phase)
    if phase == fail_in:
        print("Traceback (most recent call last):\nRuntimeError: boom in " + phase, flush=True)
        sys.exit(1)
    if phase == "convert":
        (Path(hf) / "adapter_config.json").write_text("{}")
    elif phase == "merge":
        print("Saving to " + out + "...", flush=True)
        (Path(out) / "config.json").write_text("{}")
        (Path(out) / "model.safetensors").write_bytes(b"x")
        env = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
        (Path(out) / "child.json").write_text(json.dumps({"pid": os.getpid(), "env": env}))
emit(facts={"parameters": 7})
"""


def _fake_child(monkeypatch, fail_in: str) -> None:
    monkeypatch.setattr(
        engine.export,
        "merge_command",
        lambda src, hf, out, device: [
            sys.executable,
            "-c",
            FAKE_CHILD,
            *map(str, (src.config, src.checkpoint, hf, src.base_model, out, device, fail_in)),
        ],
    )


def test_one_child_reports_every_phase(tmp_path, model_root, monkeypatch):
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    ws, config, pth = _ws_with_checkpoint(tmp_path / "ws", demo_model(model_root))
    _fake_child(monkeypatch, "none")
    started = _count_children(monkeypatch)
    calls: list[tuple[str, str]] = []
    out = convert_and_merge(
        ws, checkpoint=pth, config=config, progress=lambda p, d: calls.append((p, d))
    )
    assert len(started) == 1, started
    phases = [p for p, _ in calls]
    assert [p for p in dict.fromkeys(phases) if p != "prepare"] == [
        "convert",
        "merge",
        "save",
        "check",
        "done",
    ]
    assert is_complete_merge(out) and (ws.hf_dir / "adapter_config.json").is_file()
    info = json.loads((out / "xtuner_wizard.json").read_text())
    assert info["load_check"] == {"parameters": 7}
    # the full unpickle stays off for the child: xtuner's loader decides, after our own check
    assert json.loads((out / "child.json").read_text())["env"] is None


@pytest.mark.parametrize(
    "step, words",
    [
        ("convert", "pth_to_hf failed (exit code 1)"),
        ("merge", "merge failed (exit code 1)"),
        ("check", "the merged model does not load with transformers (exit code 1)"),
    ],
)
def test_a_failed_step_is_named_and_nothing_is_published(
    tmp_path, model_root, monkeypatch, step, words
):
    ws, config, pth = _ws_with_checkpoint(tmp_path / "ws", demo_model(model_root))
    ws.merged_dir.mkdir()
    (ws.merged_dir / "keep.txt").write_text("mine")
    _fake_child(monkeypatch, step)
    with pytest.raises(MergeFailed) as err:
        convert_and_merge(ws, checkpoint=pth, config=config)
    assert err.value.message == words and "\n" not in str(err.value)
    assert f"RuntimeError: boom in {step}" in err.value.tail
    assert (ws.merged_dir / "keep.txt").read_text() == "mine" and not ws.hf_dir.exists()
    assert not list(ws.root.glob(".*merging-*"))  # the staging folders went


@pytest.mark.slow
@GOLDEN
def test_a_real_merge_starts_one_python(model_root, tmp_path, monkeypatch):
    """pth_to_hf, merge and the load check: xtuner's tools in one child process, not three."""
    ws = trained_workspace(model_root)
    chosen = {k: ws.load_state().choices.get(k) for k in ("merged", "adapter")}
    started = _count_children(monkeypatch)
    calls: list[tuple[str, str]] = []
    try:
        out = convert_and_merge(
            ws, out=tmp_path / "merged", progress=lambda p, d: calls.append((p, d))
        )
    finally:  # the golden workspace's other readers keep its own merged/
        with ws.transaction() as state:
            state.choices.update(chosen)
    assert len(started) == 1, started
    assert started[0][1:3] == ["-m", "engine.merge_child"]
    marks = [
        m
        for m in map(parse_mark, (ws.wizard_dir / "merge.log").read_text().splitlines())
        if m is not None
    ]
    assert [m["phase"] for m in marks if "phase" in m] == ["convert", "merge", "check"]
    assert len({m["pid"] for m in marks}) == 1
    phases = [p for p, _ in calls]
    for phase in ("convert", "merge", "save", "check", "done"):
        assert phase in phases, phases
    assert is_complete_merge(out)
    info = json.loads((out / "xtuner_wizard.json").read_text())
    assert info["load_check"]["parameters"] > 1e6
    assert (tmp_path / "merged-adapter" / "adapter_config.json").is_file()
