"""Inputs that used to end in a traceback: one line with the fix, exit 2, nothing changed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_selection import fake_model

from engine.cli import main
from engine.workspace import Workspace, sha256_file

RECORDS = [{"conversation": [{"input": "你好", "output": "我是小助手"}]}] * 3


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "state.lock"
    }


@pytest.fixture
def deep(tmp_path) -> Path:
    path = tmp_path / "deep.json"
    path.write_text('[{"conversation": ' + "[" * 50_000 + "]" * 50_000 + "}]")
    return path


def test_deeply_nested_json_in_validate_config_and_doctor(workspace, tmp_path, deep, capsys):
    assert main(["-w", str(workspace.root), "data", "validate", str(deep)]) == 2
    assert "nested too deeply" in capsys.readouterr().err
    model = fake_model(tmp_path / "m")
    before = _tree(workspace.root)
    rc = main(["-w", str(workspace.root), "config", "--model", str(model), "--data", str(deep),
               "--profile", "cpu"])  # fmt: skip
    assert rc == 2 and "nested too deeply" in _one_line(capsys.readouterr().err)
    assert _tree(workspace.root) == before
    rc = main(["-w", str(workspace.root), "doctor", "--no-probe", "--json", "--data", str(deep)])
    row = [c for c in json.loads(capsys.readouterr().out)["checks"] if c["name"] == "dataset"]
    assert rc == 1 and row[0]["status"] == "fail" and "nested too deeply" in row[0]["detail"]


NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "name, check", [("config.json", "model config"), ("tokenizer_config.json", "tokenizer")]
)
def test_a_model_folders_deeply_nested_json_is_a_failed_check(
    workspace, tmp_path, capsys, name, check
):
    model = fake_model(tmp_path / "m")
    (model / name).write_text(NESTED)
    rc = main(["-w", str(workspace.root), "doctor", "--no-probe", "--json", "--model", str(model)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    row = [c for c in json.loads(out)["checks"] if c["name"] == check]
    assert rc == 1 and row[0]["status"] == "fail" and "nested too deeply" in row[0]["detail"]
    assert row[0]["fix"]


def test_a_deeply_nested_state_file_is_kept_aside_like_any_broken_one(workspace, capsys):
    workspace.state_path.write_text('{"choices": ' + NESTED + "}")
    assert workspace.load_state().choices == {}
    kept = list(workspace.backups_dir.glob("*state.json*"))
    assert kept and NESTED in kept[0].read_text()
    workspace.state_path.write_text('{"choices": ' + NESTED + "}")
    rc = main(["-w", str(workspace.root), "doctor", "--no-probe", "--json"])
    out, err = capsys.readouterr()
    assert rc in (0, 1) and "Traceback" not in err and json.loads(out)["checks"]


def test_a_deeply_nested_heldout_set(workspace, tmp_path, capsys):
    (tmp_path / "h.json").write_text(NESTED)
    rc = main(["-w", str(workspace.root), "eval", "--heldout", str(tmp_path / "h.json")])
    assert rc == 2 and "nested too deeply" in _one_line(capsys.readouterr().err)


def test_validate_checks_the_model_before_saying_ok(workspace, tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    rc = main(["-w", str(workspace.root), "data", "validate", str(good), "--model",
               str(tmp_path / "missing")])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 2 and "no such model folder" in _one_line(err)
    assert "OK" not in out, out


def test_config_takes_the_bom_file_validate_accepts(workspace, tmp_path, capsys):
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(RECORDS, ensure_ascii=False).encode())
    assert main(["-w", str(workspace.root), "data", "validate", str(bom)]) == 0
    model = fake_model(tmp_path / "m")
    rc = main(["-w", str(workspace.root), "config", "--model", str(model), "--data", str(bom),
               "--profile", "cpu"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "estimate:" in out


def test_a_truncated_file_is_called_truncated(workspace, tmp_path, capsys):
    cut = tmp_path / "cut.json"
    raw = json.dumps(RECORDS, ensure_ascii=False).encode()
    cut.write_bytes(raw[: raw.index("你".encode()) + 1])  # ends inside '你'
    assert main(["-w", str(workspace.root), "data", "validate", str(cut)]) == 2
    err = capsys.readouterr().err
    assert "it is truncated (cut off)" in err and "not UTF-8" not in err


@pytest.mark.parametrize(
    "setting",
    ["max_length=-5", "batch_size=0", "lr=-1", "warmup_ratio=2", "max_epochs=-1",
     "torch_dtype='float8'", "betas=(0.9, 2)", "lora_dropout=1.5", "lora_alpha=0",
     "attn_implementation='flash'", "pretrained_model_name_or_path='/nonexistent'"],
)  # fmt: skip
def test_set_values_are_checked_against_their_meaning(workspace, tmp_path, setting, capsys):
    model = fake_model(tmp_path / "m")
    workspace.data_dir.mkdir()
    workspace.dataset_path.write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    before = _tree(workspace.root)
    rc = main(["-w", str(workspace.root), "config", "--model", str(model), "--profile", "cpu",
               "--set", setting])  # fmt: skip
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "must be" in line and "fix: e.g. --set" in line
    assert _tree(workspace.root) == before


@pytest.mark.parametrize("tokens", ["0", "-1"])
def test_chat_generation_settings_and_device(workspace, tmp_path, capsys, tokens):
    model = fake_model(tmp_path / "m")
    rc = main(["-w", str(workspace.root), "chat", str(model), "--max-new-tokens", tokens,
               "--prompt", "hi"])  # fmt: skip
    assert rc == 2 and "--max-new-tokens" in _one_line(capsys.readouterr().err)


def test_chat_device_cuda_without_cuda(workspace, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model = fake_model(tmp_path / "m")
    rc = main(["-w", str(workspace.root), "chat", str(model), "--device", "cuda",
               "--prompt", "hi"])  # fmt: skip
    assert rc == 2 and "CUDA is not available" in _one_line(capsys.readouterr().err)


def test_output_piped_into_a_reader_that_left(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already exited
    exe = Path(sys.executable).with_name("xtuner-wizard")
    proc = subprocess.run(
        [str(exe), "config", "list"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=120,
    )
    os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""


def test_data_generate_n_has_a_limit(workspace, capsys):
    before = _tree(workspace.root)
    rc = main(["-w", str(workspace.root), "data", "generate", "--name", "Ada", "--style", "tutorial",
               "--n", "100001"])  # fmt: skip
    assert rc == 2 and "at most" in _one_line(capsys.readouterr().err)
    assert _tree(workspace.root) == before


# -- a read-only or full disk: a real small file system (tmpfs), where mounting is allowed ---
@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_in_data_generate_and_demo_model(tmp_path, capsys):
    with _tmpfs(tmp_path / "small", "96k") as root:
        ws = Workspace(root / "ws").ensure()
        ws.set_choice("name", "Ada")
        before = _tree(ws.root)
        rc = main(["-w", str(ws.root), "data", "generate", "--name", "Ada", "--style", "tutorial",
                   "--n", "2000"])  # fmt: skip
        line = _one_line(capsys.readouterr().err)
        assert rc == 2 and "disk is full" in line
        assert _tree(ws.root) == before
        rc = main(["-w", str(ws.root), "demo-model"])
        line = _one_line(capsys.readouterr().err)
        assert rc == 2 and ("disk is full" in line or "cannot write" in line), line
        assert not ws.demo_model_dir.exists()


def test_full_disk_in_config(tmp_path, capsys):
    model = fake_model(tmp_path / "m")
    with _tmpfs(tmp_path / "small", "64k") as root:
        ws = Workspace(root / "ws").ensure()
        ws.data_dir.mkdir()
        ws.dataset_path.write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
        with contextlib.suppress(OSError), (root / "filler").open("wb") as out:
            while True:  # the disk full to the last block
                out.write(b"\0" * 1024)
                out.flush()
        before = _tree(ws.root)
        rc = main(["-w", str(ws.root), "config", "--model", str(model), "--profile", "cpu"])
        line = _one_line(capsys.readouterr().err)
        assert rc == 2 and "disk is full" in line, line
        assert _tree(ws.root) == before


def test_read_only_workspace(tmp_path, capsys):
    with _tmpfs(tmp_path / "ro", "4m") as root:
        ws = Workspace(root / "ws").ensure()
        ws.set_choice("name", "Ada")
        (ws.root / "cfg.py").write_text("x = 1\n")
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        before = _tree(ws.root)
        for args in (
            ["data", "generate", "--name", "Ada"],
            ["demo-model"],
            ["config", "--model", "demo", "--profile", "cpu"],
            ["train", str(ws.root / "cfg.py")],
        ):
            rc = main(["-w", str(ws.root), *args])
            line = _one_line(capsys.readouterr().err)
            assert rc == 2, (args, line)
            assert "read-only" in line or "dataset not found" in line, (args, line)
        assert _tree(ws.root) == before
