"""One selection rule: typed paths resolved from the caller's folder, stored absolute, checked
on entry; a bad choice is refused (one line, exit 2) before anything is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.cli import main
from engine.selection import dataset_path, model_choice
from engine.workspace import Workspace

SMALL = {
    "model_type": "internlm2",
    "architectures": ["InternLM2ForCausalLM"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "vocab_size": 1000,
}


def fake_model(folder: Path, *, tokenizer: bool = True) -> Path:
    """A model folder as far as selection and config rendering read it (no weights loaded)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(SMALL))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def _dataset(ws: Workspace, rel: str) -> Path:
    rec = {"conversation": [{"input": "你好", "output": "我是小助手"}]}
    path = ws.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([rec] * 4, ensure_ascii=False), encoding="utf-8")
    return path


def test_relative_model_is_resolved_from_the_callers_folder_and_stored_absolute(
    workspace, tmp_path, monkeypatch, capsys
):
    fake_model(tmp_path / "models" / "m")
    _dataset(workspace, "datas/assistant.json")
    monkeypatch.chdir(tmp_path / "models")
    rc = main(["--workspace", str(workspace.root), "config", "--model", "m", "--profile", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert workspace.load_state().choices["model"] == str(tmp_path / "models" / "m")
    # read back from any other folder: the same folder
    monkeypatch.chdir(tmp_path)
    assert model_choice(workspace).path == tmp_path / "models" / "m"


def test_global_and_command_model_mean_the_same(workspace, capsys):
    rc = main(["--workspace", str(workspace.root), "--model", "/nonexistent", "doctor", "--json",
               "--no-probe"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 1
    model_rows = [c for c in json.loads(out)["checks"] if c["name"] == "model"]
    assert model_rows and model_rows[0]["status"] == "fail"
    assert "/nonexistent" in model_rows[0]["detail"]


def test_global_model_before_a_command_without_one_is_refused(workspace, capsys):
    rc = main(["--workspace", str(workspace.root), "--model", "/x", "train"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "takes no model" in err


def test_bad_model_in_the_wizard_exits_2_and_leaves_state_alone(workspace, monkeypatch, capsys):
    from tui import launcher
    from tui.app import WizardApp

    workspace.set_choice("model", "demo")
    before = workspace.state_path.read_bytes()
    opened = []
    # the app must never open (nor its constructor write the bad path into the state)
    monkeypatch.setattr(WizardApp, "run", lambda self, *a, **k: opened.append(self))
    rc = launcher.main(["--workspace", str(workspace.root), "--model", "/nonexistent"])
    err = capsys.readouterr().err
    assert rc == 2
    assert not opened
    assert len(err.strip().splitlines()) == 1 and "/nonexistent" in err
    assert workspace.state_path.read_bytes() == before


@pytest.mark.parametrize("tokenizer", [False])
def test_config_refuses_a_model_without_tokenizer_before_writing(
    workspace, tmp_path, capsys, tokenizer
):
    model = fake_model(tmp_path / "m", tokenizer=tokenizer)
    _dataset(workspace, "datas/assistant.json")
    workspace.set_choice("profile", "cpu")
    before = workspace.state_path.read_bytes()
    rc = main(["--workspace", str(workspace.root), "config", "--model", str(model)])
    err = capsys.readouterr().err
    assert rc == 2 and "tokenizer" in err and len(err.strip().splitlines()) == 1
    assert workspace.state_path.read_bytes() == before
    assert not list(workspace.root.glob("*_copy.py"))


def test_config_renders_against_the_recorded_dataset(workspace, tmp_path, capsys):
    model = fake_model(tmp_path / "m")
    other = _dataset(workspace, "datas/mine.json")
    workspace.set_choice("data", "datas/mine.json")  # what `data generate --out` records
    rc = main(["--workspace", str(workspace.root), "config", "--model", str(model),
               "--profile", "cpu", "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert str(other) in out and "assistant.json" not in out
    assert dataset_path(workspace) == other


def test_stored_relative_model_reads_inside_the_workspace_not_the_cwd(workspace, tmp_path):
    fake_model(workspace.root / "models" / "m")
    workspace.set_choice("model", "models/m")  # written by an older version
    os.chdir(tmp_path)
    assert model_choice(workspace).path == workspace.root / "models" / "m"
