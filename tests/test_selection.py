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


# -- every command, one rule: typed paths from the folder they are typed in -------------------
@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """The folder the user types in: not the workspace."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


@pytest.fixture
def loaded(monkeypatch) -> list[tuple[Path, Path | None]]:
    """(model, adapter) of every chat engine loaded; none loads for real."""
    from engine.chat import base

    seen: list[tuple[Path, Path | None]] = []

    class Engine:
        def stream_chat(self, messages, **kw):
            yield "ok"

    def load_engine(name, model_path=None, *, adapter=None, **kw):
        seen.append((Path(model_path), Path(adapter) if adapter else None))
        return Engine()

    monkeypatch.setattr(base, "load_engine", load_engine)
    return seen


@pytest.mark.parametrize("before", [False, True], ids=["chat-MODEL", "global---model"])
def test_chat_model_and_adapter_are_read_from_the_callers_folder(
    workspace, elsewhere, loaded, capsys, before
):
    fake_model(elsewhere / "m3")
    (elsewhere / "hf").mkdir()
    model = ["--model", "m3", "chat"] if before else ["chat", "m3"]
    rc = main(["--workspace", str(workspace.root), *model, "--adapter", "hf", "--prompt", "hi"])
    assert rc == 0, capsys.readouterr().err
    assert loaded == [(elsewhere / "m3", elsewhere / "hf")]


def test_chat_refuses_a_missing_model_in_one_line(workspace, elsewhere, loaded, capsys):
    fake_model(workspace.root / "m3")  # in the workspace, not where the user typed
    rc = main(["--workspace", str(workspace.root), "chat", "m3", "--prompt", "hi"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert str(elsewhere / "m3") in err and not loaded


def test_distributed_config_and_out_are_read_from_the_callers_folder(workspace, elsewhere, capsys):
    (elsewhere / "cfg.py").write_text("x = 1\n")
    args = ["-w", str(workspace.root), "distributed", "--gpus", "2", "--no-gpu-check"]
    assert main([*args, "--config", "cfg.py", "--json"]) == 0
    assert str(elsewhere / "cfg.py") in json.loads(capsys.readouterr().out)["argv"]
    assert main([*args, "--config", "cfg.py", "--slurm", "--out", "job.sh"]) == 0
    assert (elsewhere / "job.sh").is_file() and not (workspace.root / "job.sh").exists()
    capsys.readouterr()
    # the recorded config (written by `config`) is the workspace's
    (workspace.root / "mine.py").write_text("x = 1\n")
    workspace.set_choice("config", "mine.py")
    assert main([*args, "--json"]) == 0
    assert str(workspace.root / "mine.py") in json.loads(capsys.readouterr().out)["argv"]


def test_data_paths_are_read_from_the_callers_folder(workspace, elsewhere, capsys):
    _dataset(workspace, "d.json")  # a file of that name in the workspace is not the one typed
    rc = main(["-w", str(workspace.root), "data", "validate", "d.json"])
    assert rc == 2 and str(elsewhere / "d.json") in capsys.readouterr().err
    rc = main(["-w", str(workspace.root), "data", "generate", "--name", "Ada", "--n", "4",
               "--out", "mine.json"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert (elsewhere / "mine.json").is_file() and not (workspace.root / "mine.json").exists()
    assert dataset_path(workspace) == elsewhere / "mine.json"


def test_config_out_and_train_config_are_read_from_the_callers_folder(workspace, elsewhere, capsys):
    fake_model(elsewhere / "m")
    _dataset(workspace, "datas/assistant.json")
    rc = main(["-w", str(workspace.root), "config", "--model", "m", "--profile", "cpu",
               "--out", "mine.py"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert (elsewhere / "mine.py").is_file()
    (workspace.root / "cfg.py").write_text("x = 1\n")  # not the one typed below
    rc = main(["-w", str(workspace.root), "train", "cfg.py"])
    err = capsys.readouterr().err
    assert rc == 2 and "config not found" in err and str(elsewhere / "cfg.py") in err


def test_eval_paths_are_read_from_the_callers_folder(workspace, elsewhere, loaded, capsys):
    heldout = {"keywords": ["Ada"], "questions": [{"input": "你是谁"}]}
    (workspace.root / "h.json").write_text(json.dumps(heldout))  # not the one typed
    rc = main(["-w", str(workspace.root), "eval", "--heldout", "h.json"])
    err = capsys.readouterr().err
    assert rc == 2 and "held-out set not found" in err and str(elsewhere / "h.json") in err
    (elsewhere / "h.json").write_text(json.dumps(heldout))
    fake_model(workspace.root / "m3")  # in the workspace: not the one typed
    rc = main(["-w", str(workspace.root), "eval", "--heldout", "h.json", "--base", "m3",
               "--tuned", "m3"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--base" in err and str(elsewhere / "m3") in err and not loaded


def test_the_same_model_given_twice_is_no_conflict(workspace, elsewhere, capsys):
    from engine.cli import parse

    fake_model(elsewhere / "m")
    ws = ["-w", str(workspace.root)]
    args = parse([*ws, "--model", "m", "config", "--model", "./m"])
    assert not getattr(args, "model_conflict", None) and args.model == "./m"
    os.chdir(workspace.root)  # the demo model's folder, typed in the workspace
    args = parse([*ws, "--model", "demo", "config", "--model", "./demo-model"])
    assert not getattr(args, "model_conflict", None)
    rc = main([*ws, "--model", "demo", "config", "--model", str(elsewhere / "m"), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "two different models" in err


def test_global_model_means_chats_model(workspace):
    from engine.cli import parse

    args = parse(["-w", str(workspace.root), "--model", "m", "chat"])
    assert args.model == "m" and not getattr(args, "model_ignored", None)


@pytest.mark.parametrize("command", [["config", "--profile", "cpu"], ["run-all", "--name", "A"]])
def test_a_bad_global_model_before_the_command_exits_2(workspace, capsys, command):
    _dataset(workspace, "datas/assistant.json")
    before = _tree_of(workspace.root)
    rc = main(["--workspace", str(workspace.root), "--model", "/nonexistent", *command])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "/nonexistent" in err
    assert _tree_of(workspace.root) == before


def _tree_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "state.lock"
    }
