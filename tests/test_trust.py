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


# -- issue 13's audit: every loader of a folder's code asks; the demo by its hash ---------------
def _demo_copy(ws: Workspace, demo_model_dir: Path) -> Path:
    """The wizard's demo model (built once per session) as this workspace's demo-model/."""
    shutil.copytree(demo_model_dir, ws.demo_model_dir)
    return ws.demo_model_dir


def test_a_demo_whose_code_was_changed_is_refused_by_config_and_run_all(
    workspace, demo_model_dir, capsys
):
    demo = _demo_copy(workspace, demo_model_dir)
    _data(workspace)
    args = ["-w", str(workspace.root), "config", "--model", "demo", "--profile", "cpu"]
    assert main(args) == 0, capsys.readouterr().err  # the golden path: never asked
    config = next(workspace.root.glob("*_copy.py"))
    written = config.read_bytes()
    with open(demo / "modeling_internlm2.py", "a") as fh:
        fh.write("\nimport os  # added after the wizard built it\n")
    assert not is_trusted(workspace, demo)
    assert main([*args, "--force"]) == 2  # by its code's hash, not by its name "demo"
    err = capsys.readouterr().err
    assert "modeling_internlm2.py" in err and "--trust-remote-code" in err
    assert len(err.strip().splitlines()) == 1 and config.read_bytes() == written
    dataset = workspace.dataset_path.read_bytes()
    rc = main(["-w", str(workspace.root), "run-all", "--name", "Ada", "--model", "demo"])
    assert rc == 2 and "modeling_internlm2.py" in capsys.readouterr().err
    assert workspace.dataset_path.read_bytes() == dataset and not workspace.runs_dir.exists()


def test_set_model_path_cannot_bring_unconfirmed_code(workspace, tmp_path, capsys):
    plain = fake_model(tmp_path / "plain")
    evil = remote_model(tmp_path / "evil")
    _data(workspace)
    args = ["-w", str(workspace.root), "config", "--model", str(plain), "--profile", "cpu",
            "--set", f"pretrained_model_name_or_path={str(evil)!r}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "modeling_evil.py" in err and "pretrained_model_name_or_path" in err
    assert not list(workspace.root.glob("*_copy.py"))
    assert main([*args, "--trust-remote-code"]) == 0, capsys.readouterr().err
    assert remote_code(evil).digest in workspace.load_state().trusted


def _config_training(ws: Workspace, model: Path) -> Path:
    """The tutorial's config, pointed at ``model`` and the workspace's dataset."""
    text = TUTORIAL_CFG.read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        if line.startswith("pretrained_model_name_or_path = "):
            line = f"pretrained_model_name_or_path = {str(model)!r}"
        elif line.startswith("alpaca_en_path = "):
            line = f"alpaca_en_path = {str(ws.dataset_path)!r}"
        lines.append(line)
    cfg = ws.root / "cfg.py"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def test_train_of_a_config_refuses_its_models_unconfirmed_code(
    workspace, tmp_path, capsys, monkeypatch
):
    from engine.runs import launch
    from engine.trust import UntrustedCode

    model = remote_model(tmp_path / "m")
    _data(workspace)
    cfg = _config_training(workspace, model)
    assert launch.trained_model(workspace, cfg) == model
    with pytest.raises(UntrustedCode, match="modeling_evil.py"):
        launch.preflight(workspace, cfg)  # the Train step and `resume` start through it too
    assert main(["-w", str(workspace.root), "train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "modeling_evil.py" in err and "--trust-remote-code" in err
    assert not list(workspace.runs_dir.glob("*.json")) if workspace.runs_dir.exists() else True

    def no_start(*args, **kwargs):  # the consent is what is tested, not a real trainer
        from engine.errors import WizardError

        raise WizardError("not started in this test")

    monkeypatch.setattr(launch, "start_run", no_start)
    main(["-w", str(workspace.root), "train", str(cfg), "--trust-remote-code"])
    assert remote_code(model).digest in workspace.load_state().trusted
    launch.preflight(workspace, cfg)  # confirmed: no longer refused


def test_eval_refuses_unconfirmed_base_or_tuned_before_loading(workspace, tmp_path, capsys):
    plain = fake_model(tmp_path / "plain")
    evil = remote_model(tmp_path / "evil")
    workspace.set_choice("name", "Ada")  # the tutorial's questions, for want of heldout.json
    for flags in (["--base", str(evil), "--tuned", str(plain)],
                  ["--base", str(plain), "--tuned", str(evil)]):  # fmt: skip
        rc = main(["-w", str(workspace.root), "eval", *flags])
        err = capsys.readouterr().err
        assert rc == 2 and "modeling_evil.py" in err and "--trust-remote-code" in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (workspace.root / "eval").exists()


def test_chat_engines_and_the_tokenizer_refuse_unconfirmed_code(workspace, tmp_path):
    from engine.chat.base import load_engine
    from engine.chat.hf import load_hf_model
    from engine.data.stats import dataset_stats, load_tokenizer
    from engine.trust import UntrustedCode, trust

    evil = remote_model(tmp_path / "evil")
    records = [{"conversation": [{"input": "hi", "output": "hello"}]}]
    for load in (
        lambda: load_engine("hf", evil, template="internlm2_chat", workspace=workspace),
        lambda: load_engine("fast", evil, template="internlm2_chat"),
        lambda: load_hf_model(evil, workspace=workspace),
        lambda: load_tokenizer(evil, workspace),
        lambda: dataset_stats(records, evil, ws=workspace),
    ):
        with pytest.raises(UntrustedCode, match="modeling_evil.py"):
            load()
    trust(workspace, evil)
    with pytest.raises(UntrustedCode):  # a confirmation is the workspace's, not anyone's
        load_tokenizer(evil)
    with pytest.raises(Exception) as loaded:  # confirmed: transformers gets to try (and fail)
        load_tokenizer(evil, workspace)
    assert not isinstance(loaded.value, UntrustedCode)


def test_environment_check_warns_with_files_and_hash_until_confirmed(workspace, tmp_path):
    from engine.envcheck import can_train, check_model
    from engine.trust import trust

    evil = remote_model(tmp_path / "evil")
    checks, _ = check_model(evil, ws=workspace)
    remote = next(c for c in checks if c.name == "remote code")
    assert remote.status == "warn" and can_train(checks)  # worth knowing, not a failure
    assert "modeling_evil.py" in remote.detail and remote_code(evil).short in remote.detail
    assert "press t" in remote.fix and "--trust-remote-code" in remote.fix
    trust(workspace, evil)
    remote = next(c for c in check_model(evil, ws=workspace)[0] if c.name == "remote code")
    assert remote.status == "ok" and "confirmed" in remote.detail


def test_trust_records_only_the_code_that_was_shown(workspace, tmp_path):
    from engine.trust import UntrustedCode, trust

    evil = remote_model(tmp_path / "evil")
    shown = remote_code(evil).digest
    (evil / "modeling_evil.py").write_text("import os; os.system('true')\n")
    with pytest.raises(UntrustedCode, match="changed"):
        trust(workspace, evil, expected=shown)
    assert not workspace.load_state().trusted


def test_slurm_script_unpickles_only_for_the_workspaces_checkpoint(workspace, tmp_path, capsys):
    from train_support import write_checkpoint

    from engine.distributed import LaunchPlan, slurm_script

    cfg = workspace.root / "cfg.py"
    cfg.write_text("x = 1\n", encoding="utf-8")
    plan = LaunchPlan(gpus_per_node=2, config=cfg, work_dir=workspace.work_dirs / "cfg")
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in slurm_script(plan)
    stranger = write_checkpoint(tmp_path / "any.pth")
    args = ["-w", str(workspace.root), "distributed", "--gpus", "2", "--slurm",
            "--config", str(cfg), "--no-gpu-check"]  # fmt: skip
    assert main([*args, "--resume", str(stranger)]) == 2
    err = capsys.readouterr().err
    assert "--trust-checkpoint" in err and len(err.strip().splitlines()) == 1
    own = workspace.work_dirs / "cfg" / "iter_2.pth"
    own.parent.mkdir(parents=True)
    write_checkpoint(own)
    assert main([*args, "--resume", str(own)]) == 0
    assert "export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1" in capsys.readouterr().out
    assert main([*args, "--resume", str(stranger), "--trust-checkpoint"]) == 0
    assert "export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1" in capsys.readouterr().out
    assert main(args) == 0
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in capsys.readouterr().out


class _NotTensors:
    """What mmengine pickles beside the weights (its message hub): no weights_only load."""


def test_a_pickled_checkpoint_loads_fully_only_from_the_workspaces_runs(workspace, tmp_path):
    import torch

    from engine.chat.adapter import load_checkpoint_state
    from engine.trust import UntrustedCheckpoint

    ckpt = {"state_dict": {"w": torch.zeros(2)}, "message_hub": _NotTensors()}
    stranger = tmp_path / "any.pth"
    torch.save(ckpt, stranger)
    with pytest.raises(UntrustedCheckpoint, match="--trust-checkpoint"):
        load_checkpoint_state(stranger, workspace)
    with pytest.raises(UntrustedCheckpoint):
        load_checkpoint_state(stranger)  # no workspace: nothing is its own
    own = workspace.work_dirs / "run" / "iter_1.pth"
    own.parent.mkdir(parents=True)
    torch.save(ckpt, own)
    assert set(load_checkpoint_state(own, workspace)) == {"w"}
    assert set(load_checkpoint_state(stranger, workspace, trust_checkpoint=True)) == {"w"}
    tensors_only = tmp_path / "tensors.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}}, tensors_only)
    assert set(load_checkpoint_state(tensors_only)) == {"w"}  # weights_only: fine anywhere
