"""Environment checks on real inputs: a demo model folder, broken ones, missing ones; doctor."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import envcheck
from engine.cli import main as cli_main
from engine.demo import ensure_demo_model
from engine.envcheck import Check, can_train
from engine.gpu import GpuSample, GpuSampler, format_metric
from engine.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())"]

DATASET = [
    {"conversation": [{"input": "请介绍一下你自己", "output": "我是小明的小助手"}]},
    {"conversation": [{"input": "你在实战营做什么", "output": "我在这里帮助小明"}]},
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    # Same folder as tests/test_demo.py uses: one build per session.
    ws = Workspace(tmp_path_factory.getbasetemp() / "shared-demo-ws").ensure()
    return ensure_demo_model(ws)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


# -- the model folder ---------------------------------------------------------------------
def test_demo_model_folder_passes_and_lists_its_remote_code(demo_dir: Path):
    checks, size = envcheck.check_model(demo_dir)
    named = by_name(checks)
    assert [c.status for c in checks] == ["ok"] * 4, checks
    assert "InternLM2ForCausalLM" in named["model config"].detail
    assert "tokenizer.json" in named["tokenizer"].detail
    assert "template: yes" in named["tokenizer"].detail
    assert "model.safetensors" in named["weights"].detail
    remote = named["remote code"].detail  # the wizard's own code: trusted, named with its hash
    assert "configuration_internlm2.py, modeling_internlm2.py (sha256 " in remote
    assert "demo" in remote
    assert size == (demo_dir / "model.safetensors").stat().st_size


@pytest.fixture
def broken_copy(demo_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(demo_dir, folder)
    return folder


def test_missing_weights_tokenizer_and_remote_code_fail(broken_copy: Path):
    (broken_copy / "model.safetensors").unlink()
    (broken_copy / "tokenizer.json").unlink()
    (broken_copy / "modeling_internlm2.py").unlink()
    checks, size = envcheck.check_model(broken_copy)
    named = by_name(checks)
    assert named["model config"].status == "ok"
    assert named["weights"].status == "fail" and "no weight files" in named["weights"].detail
    assert named["tokenizer"].status == "fail"
    assert named["remote code"].status == "fail"
    assert "modeling_internlm2.py" in named["remote code"].detail
    assert all(c.fix for c in checks if c.status == "fail")
    assert size is None and not can_train(checks)


def test_broken_config_json_and_missing_shards_fail(broken_copy: Path):
    (broken_copy / "config.json").write_text('{"model_type": "internlm2",')
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors"}}
    (broken_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    named = by_name(envcheck.check_model(broken_copy)[0])
    assert named["model config"].status == "fail"
    assert "not valid JSON" in named["model config"].detail
    assert named["weights"].status == "fail"
    assert "model-00001-of-00002.safetensors" in named["weights"].detail


def test_hub_references_in_auto_map_fail(broken_copy: Path):
    cfg = json.loads((broken_copy / "config.json").read_text())
    cfg["auto_map"]["AutoConfig"] = "internlm/internlm2-chat-1_8b--configuration_internlm2.X"
    (broken_copy / "config.json").write_text(json.dumps(cfg))
    named = by_name(envcheck.check_model(broken_copy)[0])
    assert named["remote code"].status == "fail"
    assert "internlm/internlm2-chat-1_8b--configuration_internlm2.py" in named["remote code"].detail


def test_missing_model_folder_fails_but_an_unbuilt_demo_only_warns(tmp_path: Path):
    [missing], _ = envcheck.check_model(tmp_path / "nope")
    assert missing.status == "fail" and "not found" in missing.detail and missing.fix
    [unbuilt], _ = envcheck.check_model(tmp_path / "demo-model", is_demo=True)
    assert unbuilt.status == "warn" and "demo-model" in unbuilt.fix


def test_model_choice_comes_from_the_workspace(workspace: Workspace, tmp_path: Path):
    assert envcheck.model_dir_of(workspace, None) == (workspace.demo_model_dir, True)
    workspace.set_choice("model", str(tmp_path / "m"))
    assert envcheck.model_dir_of(workspace, None) == (tmp_path / "m", False)
    assert envcheck.model_dir_of(workspace, "demo") == (workspace.demo_model_dir, True)


# -- the dataset ----------------------------------------------------------------------------
def test_dataset_checks(tmp_path: Path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(DATASET, ensure_ascii=False), encoding="utf-8")
    assert envcheck.check_dataset(good).status == "ok"

    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"conversation": [}\n]', encoding="utf-8")
    check = envcheck.check_dataset(bad)
    assert check.status == "fail" and "bad.json:2:" in check.detail and check.fix
    # Without the Data step's validator, the plain JSON check still names the line.
    basic = envcheck._basic_dataset_check(bad)
    assert basic.status == "fail" and "line 2" in basic.detail

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"instruction": "x", "output": "y"}]), encoding="utf-8")
    check = envcheck.check_dataset(wrong)
    assert check.status == "fail", check
    assert envcheck._basic_dataset_check(wrong).detail.endswith("item 0 has no 'conversation' list")

    assert envcheck.check_dataset(tmp_path / "none.json", explicit=True).status == "fail"
    assert envcheck.check_dataset(tmp_path / "none.json").status == "warn"


# -- machine --------------------------------------------------------------------------------
def test_package_versions_match_what_xtuner_declares():
    named = by_name(envcheck._package_checks())
    assert named["xtuner"].status == "ok"
    have = importlib.metadata.version("transformers")
    assert named["transformers"].detail.startswith(have)
    assert "==4.48.0" in named["transformers"].detail  # read from xtuner's own metadata
    assert {"torch", "mmengine", "peft", "bitsandbytes", "datasets"} <= set(named)
    # All fine here: one summary line naming each version.
    [summary] = envcheck.check_packages()
    assert summary.name == "packages" and summary.status == "ok"
    assert f"transformers {have}" in summary.detail and "xtuner 0.2.0" in summary.detail


def test_torch_probe_runs_in_a_child_process():
    probe = envcheck.probe_torch_cached(refresh=True)
    assert probe["torch"] == importlib.metadata.version("torch")
    assert envcheck.probe_torch_cached() is probe  # reused until the re-check key refreshes
    checks = by_name(envcheck.checks_from_probe(probe))
    if probe["cuda_available"]:
        assert checks["torch + CUDA"].status == "ok"
    else:  # CPU only: a warning, never a failure
        assert checks["torch + CUDA"].status == "warn"
        assert checks["bitsandbytes 4-bit"].status == "warn"
        assert can_train(list(checks.values()))


def test_probe_failures_become_failed_checks():
    [c] = envcheck.checks_from_probe(
        envcheck.probe_torch(python=str(Path(sys.executable).parent / "no-such-python"))
    )
    assert c.status == "fail" and "cannot start" in c.detail


def test_a_cancelled_probe_stops_at_once():
    import threading

    cancel = threading.Event()
    cancel.set()
    assert envcheck.probe_torch(cancel=cancel) == {"error": "cancelled"}


def test_triton_clash_gets_its_fix():
    checks = by_name(
        envcheck.checks_from_probe(
            {
                "torch": "2.14.1",
                "cuda_available": True,
                "cuda_version": "12.8",
                "device_count": 1,
                "devices": ["NVIDIA H200"],
                "bf16": True,
                "bnb_error": "ModuleNotFoundError: No module named 'triton.ops'",
            }
        )
    )
    assert checks["torch + CUDA"].status == "ok" and "NVIDIA H200" in checks["torch + CUDA"].detail
    assert checks["bitsandbytes 4-bit"].status == "warn"
    assert "uninstall -y triton" in checks["bitsandbytes 4-bit"].fix


def test_gpu_sampler_never_raises_and_gpu_checks():
    sampler = GpuSampler()
    samples = sampler.sample()
    assert isinstance(samples, list)
    if not samples:  # no GPU/driver here: one warning that says why
        [c] = envcheck.checks_from_gpus(samples, sampler.error)
        assert c.status == "warn" and "no NVIDIA GPU" in c.detail
    full = GpuSample(0, "NVIDIA H200", 97.0, 143000.0, 143771.0, 61.0, 520.5)
    odd = GpuSample(1, "GRID vGPU", None, None, None, None, None)
    a, b = envcheck.checks_from_gpus([full, odd])
    assert a.status == "warn" and "almost full" in a.detail and "61 °C" in a.detail
    assert b.status == "ok" and "N/A" in b.detail
    assert format_metric(None, "W") == "N/A"
    assert format_metric(520.46, "W", digits=1) == "520.5 W"
    assert full.mem_free_mb == pytest.approx(771.0)


def test_disk_check_compares_free_space_with_the_run(tmp_path: Path):
    assert envcheck.check_disk(tmp_path, 16 * 2**20).status == "ok"
    huge = envcheck.check_disk(tmp_path / "not" / "yet", 10**16)
    assert huge.status == "fail" and huge.fix
    free = shutil.disk_usage(tmp_path).free
    train, total = envcheck.run_disk_needs(int(free / 1.12))
    assert train < free < total
    assert envcheck.check_disk(tmp_path, int(free / 1.12)).status == "warn"


def test_can_train_lets_warnings_through():
    assert can_train([Check("a", "ok", ""), Check("b", "warn", "")])
    assert not can_train([Check("a", "ok", ""), Check("b", "fail", "")])


# -- everything, and the doctor command -------------------------------------------------
def test_run_checks_on_a_ready_workspace(demo_dir: Path, workspace: Workspace):
    workspace.dataset_path.parent.mkdir(parents=True)
    workspace.dataset_path.write_text(json.dumps(DATASET, ensure_ascii=False), encoding="utf-8")
    seen: list[Check] = []
    checks = envcheck.run_checks(workspace, model=str(demo_dir), probe=False, on_check=seen.append)
    assert seen == checks
    names = [c.name for c in checks]
    for expected in ("Python", "packages", "CPU", "RAM", "disk", "weights", "dataset"):
        assert expected in names
    assert by_name(checks)["dataset"].status == "ok"
    assert can_train(checks), [c for c in checks if c.status == "fail"]


def test_doctor_json_and_exit_codes(demo_dir: Path, tmp_path: Path):
    ws = tmp_path / "ws"
    ok = subprocess.run(
        [*CLI, "--workspace", str(ws), "doctor", "--json", "--model", str(demo_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["can_train"] is True
    names = [c["name"] for c in data["checks"]]
    assert "torch + CUDA" in names and "remote code" in names
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in data["checks"])

    bad = subprocess.run(
        [*CLI, "-w", str(ws), "doctor", "--json", "--no-probe", "--model", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    assert data["can_train"] is False
    assert {"name": "model", "status": "fail"}.items() <= next(
        c for c in data["checks"] if c["name"] == "model"
    ).items()


def test_doctor_table(demo_dir: Path, tmp_path: Path, capsys):
    code = cli_main(
        ["-w", str(tmp_path), "doctor", "--no-probe", "--model", str(demo_dir), "--data", "x.json"]
    )
    out = capsys.readouterr().out
    assert code == 1  # an explicit dataset that does not exist stops training
    assert "dataset" in out and "x.json" in out and "cannot go ahead" in out


def test_wizard_start_imports_no_torch_transformers_or_xtuner():
    code = (
        "import sys, tui.app, engine.envcheck, engine.gpu, engine.demo, engine.cli.doctor, "
        "engine.cli.demo; import engine.cli; engine.cli.build_parser(); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'xtuner', 'tokenizers', 'datasets', 'peft', 'mmengine')); "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
