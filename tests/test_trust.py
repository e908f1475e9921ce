"""No code runs without consent: a model folder's Python is named and confirmed once per hash;
checkpoints from outside the workspace's runs are not unpickled without a flag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_selection import fake_model

from engine.cli import main
from engine.trust import is_trusted, own_checkpoint, remote_code, unpickle_env
from engine.workspace import Workspace
from engine.xtuner_env import child_env

TUTORIAL_CFG = (
    Path(__file__).parent / "data" / "tutorial" / "internlm2_chat_1_8b_qlora_alpaca_e3_copy.py"
)


def remote_model(folder: Path) -> Path:
    fake_model(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modeling_evil.py").write_text("import os  # runs on load\n")
    return folder


def _data(ws: Workspace) -> None:
    ws.data_dir.mkdir(exist_ok=True)
    ws.dataset_path.write_text(
        json.dumps([{"conversation": [{"input": "hi", "output": "hello"}]}]), encoding="utf-8"
    )


def test_chat_dir_with_remote_code_is_refused_naming_files_and_flag(workspace, tmp_path, capsys):
    model = remote_model(tmp_path / "m")
    before = workspace.state_path.read_bytes() if workspace.state_path.exists() else None
    rc = main(["-w", str(workspace.root), "chat", str(model), "--prompt", "hi"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "modeling_evil.py" in err and "--trust-remote-code" in err
    assert remote_code(model).short in err
    after = workspace.state_path.read_bytes() if workspace.state_path.exists() else None
    assert after == before


def test_config_asks_once_per_code_hash(workspace, tmp_path, capsys):
    model = remote_model(tmp_path / "m")
    _data(workspace)
    args = ["-w", str(workspace.root), "config", "--model", str(model), "--profile", "cpu"]
    assert main(args) == 2
    assert "modeling_evil.py" in capsys.readouterr().err
    assert not list(workspace.root.glob("*_copy.py"))
    assert main([*args, "--trust-remote-code"]) == 0
    assert remote_code(model).digest in workspace.load_state().trusted
    assert main(args) == 0  # confirmed once: not asked again
    (model / "modeling_evil.py").write_text("import os; os.system('true')\n")
    assert not is_trusted(workspace, model)
    assert main(args) == 2  # the code changed: asked again
    capsys.readouterr()


def test_the_wizards_own_demo_code_is_trusted_a_changed_copy_is_not(workspace):
    from engine.demo import MARKER, REMOTE_CODE_FILES, _remote_code_source

    demo = workspace.demo_model_dir
    demo.mkdir()
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(_remote_code_source() / name, demo / name)
    (demo / "config.json").write_text(
        json.dumps({"auto_map": {"AutoModel": "modeling_internlm2.InternLM2ForCausalLM"}})
    )
    assert not is_trusted(workspace, demo)  # no marker: not the wizard's build
    (demo / MARKER).write_text("{}")
    assert is_trusted(workspace, demo)
    with open(demo / REMOTE_CODE_FILES[1], "a") as fh:
        fh.write("\nimport os\n")
    assert not is_trusted(workspace, demo)


def test_only_the_workspaces_checkpoints_unpickle_fully(workspace, tmp_path):
    own = workspace.work_dirs / "cfg" / "iter_2.pth"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"\0")
    stranger = tmp_path / "any.pth"
    stranger.write_bytes(b"\0")
    link = workspace.work_dirs / "cfg" / "iter_9.pth"
    link.symlink_to(stranger)
    assert own_checkpoint(workspace, own) and unpickle_env(workspace, own) == {
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"
    }
    assert not own_checkpoint(workspace, stranger) and unpickle_env(workspace, stranger) == {}
    assert not own_checkpoint(workspace, link)  # a link cannot smuggle one in
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in child_env({})


def test_merge_refuses_a_checkpoint_from_anywhere(workspace, tmp_path, capsys):
    model = fake_model(tmp_path / "m")
    cfg = tmp_path / "cfg.py"
    shutil.copyfile(TUTORIAL_CFG, cfg)
    from train_support import write_checkpoint

    stranger = write_checkpoint(tmp_path / "any.pth")
    rc = main(["-w", str(workspace.root), "merge", "--checkpoint", str(stranger), "--config",
               str(cfg), "--base", str(model)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--trust-checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not workspace.merged_dir.exists() and not workspace.hf_dir.exists()


@pytest.mark.parametrize("flag", ["--trust-remote-code"])
def test_data_validate_with_a_remote_code_tokenizer_asks(workspace, tmp_path, flag, capsys):
    model = remote_model(tmp_path / "m")
    _data(workspace)
    rc = main(["-w", str(workspace.root), "data", "validate", str(workspace.dataset_path),
               "--model", str(model)])  # fmt: skip
    assert rc == 2 and flag in capsys.readouterr().err
