"""``xtuner-wizard config``: real command line, bad input, and a two-iteration CPU training."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import TUTORIAL_BASE
from engine.workspace import Workspace, sha256_file

CONFIG_NAME = f"{TUTORIAL_BASE}_copy.py"


@pytest.fixture
def demo_dir(demo_model_dir) -> Path:
    return demo_model_dir


@pytest.fixture
def ws_with_data(workspace: Workspace) -> Workspace:
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
    workspace.data_dir.mkdir(parents=True, exist_ok=True)
    workspace.dataset_path.write_text(
        json.dumps([a, b] * 51, ensure_ascii=False, indent=4), encoding="utf-8"
    )
    return workspace


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in root.rglob("*") if p.is_file()}


def test_config_list_like_xtuner_list_cfg(capsys):
    assert main(["config", "list", "-p", "internlm2_chat_1_8b_qlora"]) == 0
    out = capsys.readouterr().out.split()
    assert TUTORIAL_BASE in out and all("internlm2_chat_1_8b_qlora" in n for n in out)
    assert main(["config", "list", "-p", "no-such-thing"]) == 2


def test_config_writes_the_copy_and_marks_the_step(ws_with_data, demo_dir, capsys):
    ws = ws_with_data
    code = main(
        [
            "config",
            "-w",
            str(ws.root),
            "--model",
            str(demo_dir),
            "--profile",
            "cpu",
            "--set",
            "max_iters=2",
            "--diff",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "+    dataset=dict(type=load_dataset" in out
        and "+train_cfg = dict(type=TrainLoop, max_iters=2)" in out
    )
    path = ws.root / CONFIG_NAME
    assert path.is_file()
    state = ws.load_state()
    assert "config" in state.done and state.choices["config"] == CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    assert f'alpaca_en_path = "{ws.dataset_path}"' in text


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--model", "/no/such/model"], "model folder not found"),
        (["--model", "{ws}"], "no config.json"),
        (["--model", "{demo}", "--data", "{ws}/missing.json"], "dataset not found"),
        (
            ["--model", "{demo}", "--base", "internlm2_chat_1_8b_qlora_alpaca_e9"],
            "unknown base config",
        ),
        (["--model", "{demo}", "--set", "max_lenght=3"], "did you mean max_length"),
        (["--model", "{demo}", "--set", "lr=fast"], "is not a Python value"),
    ],
)
def test_bad_input_one_line_no_traceback_nothing_changed(
    ws_with_data, demo_dir, capsys, args, expected
):
    ws = ws_with_data
    (ws.root / CONFIG_NAME).write_text("# the user's own config\n", encoding="utf-8")
    before = _snapshot(ws.root)
    argv = ["config", "-w", str(ws.root)] + [a.format(ws=ws.root, demo=demo_dir) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(ws.root) == before


def test_hand_edited_config_is_not_clobbered(ws_with_data, demo_dir, capsys):
    ws = ws_with_data
    argv = ["config", "-w", str(ws.root), "--model", str(demo_dir), "--profile", "cpu"]
    assert main(argv) == 0
    path = ws.root / CONFIG_NAME
    path.write_text(path.read_text() + "# tuned by hand\n", encoding="utf-8")
    edited = path.read_text()
    assert main(argv) == 2
    assert "changed by hand" in capsys.readouterr().err
    assert path.read_text() == edited
    assert main(argv + ["--force"]) == 0
    assert "# tuned by hand" not in path.read_text()
    assert any(b.read_text() == edited for b in ws.backups_dir.iterdir())


@pytest.mark.slow
@pytest.mark.long  # `make test`: the golden path trains the auto (= cpu) profile end to end
def test_cpu_profile_trains_the_demo_model_two_iterations(ws_with_data, demo_dir):
    from engine.xtuner_env import TRAIN_MODULE, child_env, module_command

    ws = ws_with_data
    assert (
        main(
            [
                "config",
                "-w",
                str(ws.root),
                "--model",
                str(demo_dir),
                "--profile",
                "auto",
                "--set",
                "max_iters=2",
            ]
        )
        == 0
    )
    proc = subprocess.run(
        module_command(TRAIN_MODULE, CONFIG_NAME),
        cwd=ws.root,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    work = ws.work_dirs / CONFIG_NAME[:-3]
    assert (work / "iter_2.pth").is_file()
    assert "Iter(train) [2/2]" in proc.stdout + proc.stderr
