"""`xtuner-wizard model get` against a hub on 127.0.0.1 (tests/fake_hub.py) serving the demo
model in the hub's file layout: progress, a link dropped half-way and resumed, a killed worker
resumed, no network, no disk, and linking a model into the workspace as the tutorial does."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from fake_hub import COMMIT, FakeHub

from engine.cli import main as cli_main
from engine.download import current_job, read_job
from engine.workspace import Workspace

REPO = "Shanghai_AI_Laboratory/internlm2-chat-1_8b"
# huggingface_hub writes what it reads in 10 MiB chunks (constants.DOWNLOAD_CHUNK_SIZE): a link
# dropped inside a chunk loses that chunk, so the cut comes after the first whole one.
CHUNK = 10 * 1024 * 1024


@pytest.fixture
def demo_dir(demo_model_dir: Path) -> Path:
    return demo_model_dir  # the session's demo model (tests/conftest.py), only read


@pytest.fixture
def hub(demo_dir: Path, monkeypatch, tmp_path: Path):
    server = FakeHub({REPO: demo_dir})
    monkeypatch.setenv("HF_ENDPOINT", server.start())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    yield server
    server.stop()


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _wait(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_link_dropped_half_way_resumes_and_the_model_lands_in_the_cache(
    hub: FakeHub, demo_dir: Path, workspace: Workspace, tmp_path: Path, capsys
):
    weights = (demo_dir / "model.safetensors").stat().st_size
    assert CHUNK < weights * 0.7  # the cut comes well inside the file
    hub.drop_after["model.safetensors"] = CHUNK + 4096
    assert cli_main(["--workspace", str(workspace.root), "model", "get", REPO]) == 0
    out = capsys.readouterr().out
    snap = tmp_path / "hub" / ("models--" + REPO.replace("/", "--")) / "snapshots" / COMMIT
    assert f"done: {REPO} -> {snap}" in out
    assert _digests(snap) == _digests(demo_dir)  # every file, byte for byte
    assert (snap / "model.safetensors").is_symlink()  # the hub's cache layout
    # the first GET was cut after one chunk; the next asked only for the rest
    assert hub.gets("model.safetensors") == [None, f"bytes={CHUNK}-"]
    job = read_job(workspace.root / ".wizard" / "downloads" / f"hf--{REPO.replace('/', '--')}.json")
    assert job.state == "done" and job.bytes_done == job.bytes_total
    assert job.files_done == job.files_total == len(_digests(demo_dir))
    assert job.attempts == 2 and "ChunkedEncodingError" in job.history[0]
    assert job.bytes_total == sum(p.stat().st_size for p in demo_dir.iterdir() if p.is_file())

    # it is found where every tool looks: the HF cache, with the configs that fit it
    assert cli_main(["--workspace", str(workspace.root), "models", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["models"]
    entry = next(m for m in found if m["source"] == "huggingface")
    assert entry["name"] == REPO and entry["path"] == str(snap)
    assert entry["configs"][0] == "internlm2_chat_1_8b_qlora_alpaca_e3"
    assert entry["size_bytes"] == job.bytes_total

    # the tutorial's layout: linked into the workspace and chosen
    assert cli_main(["--workspace", str(workspace.root), "model", "link", str(snap)]) == 0
    assert f"linked {REPO} -> {snap}" in capsys.readouterr().out
    link = workspace.root / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b"
    assert link.is_symlink() and link.resolve() == snap.resolve()
    assert workspace.load_state().choices["model"] == str(link)
    assert cli_main(["--workspace", str(workspace.root), "model", "link", str(snap)]) == 0  # again
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llama"}')
    capsys.readouterr()
    code = cli_main(["--workspace", str(workspace.root), "model", "link", str(other), "--as", REPO])
    assert code == 2 and "already links to" in capsys.readouterr().err


def test_a_killed_worker_leaves_the_partial_file_and_the_next_get_resumes_it(
    hub: FakeHub, demo_dir: Path, workspace: Workspace, tmp_path: Path, capsys
):
    hub.stall_after["model.safetensors"] = CHUNK + 4096
    ws = ["--workspace", str(workspace.root)]
    assert cli_main([*ws, "model", "get", REPO, "--detach"]) == 0
    assert "goes on in the background" in capsys.readouterr().out
    assert hub.stalled.wait(60)
    job = _wait(
        lambda: (j := current_job(workspace, REPO)) and j.bytes_done >= CHUNK and j.pid and j,
        "a chunk of the weights on disk",
    )
    assert job.state == "downloading" and job.bytes_total > job.bytes_done
    # progress: bytes, rate and ETA, as `model get` and the picker show them
    line = job.describe()
    assert job.rate > 0 and job.eta is not None and job.eta > 0
    assert re.fullmatch(
        rf"{REPO}: 1\d\.\d MiB / 15\.\d MiB \(\d+%\), \d/\d files, [\d.]+ [KMG]iB/s, ETA \d+ s",
        line,
    ), line
    os.killpg(job.pid, signal.SIGKILL)  # the worker's session: as if the machine rebooted
    _wait(lambda: current_job(workspace, REPO).state == "failed", "the dead worker noticed")
    assert "resumes" in current_job(workspace, REPO).fix
    hub.release.set()

    assert cli_main([*ws, "model", "get", REPO]) == 0
    snap = tmp_path / "hub" / ("models--" + REPO.replace("/", "--")) / "snapshots" / COMMIT
    assert _digests(snap) == _digests(demo_dir)
    assert hub.gets("model.safetensors") == [None, f"bytes={CHUNK}-"]
    job = current_job(workspace, REPO)
    assert job.bytes_at_start >= CHUNK and job.attempts == 1
    assert job.history and job.history[0].startswith("resuming:")


def test_without_network_one_line_says_how_to_bring_a_model_in(
    workspace: Workspace, monkeypatch, tmp_path: Path, capsys
):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code = cli_main(["--workspace", str(workspace.root), "model", "get", "internlm/x"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "can't be reached" in err and "--model DIR" in err and "Traceback" not in err
    assert not (tmp_path / "hub").exists()  # nothing written


def test_unknown_repo_and_too_little_disk_stop_before_any_file_is_fetched(
    demo_dir: Path, workspace: Workspace, monkeypatch, tmp_path: Path, capsys
):
    # the API claims 1 PB of weights: the disk check refuses before a single byte
    server = FakeHub({REPO: demo_dir}, sizes={"model.safetensors": 1 << 50})
    monkeypatch.setenv("HF_ENDPOINT", server.start())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    try:
        ws = ["--workspace", str(workspace.root)]
        assert cli_main([*ws, "model", "get", "nobody/nothing"]) == 2
        assert "no model nobody/nothing on the hub" in capsys.readouterr().err
        assert cli_main([*ws, "model", "get", REPO]) == 2
        err = capsys.readouterr().err
        assert "not enough disk" in err and "HF_HUB_CACHE" in err
        assert not [r for r in server.requests if "/resolve/" in r[1]]
        assert cli_main([*ws, "model", "get", "not a repo"]) == 2
        assert "not a model id" in capsys.readouterr().err
    finally:
        server.stop()


def test_huggingface_hub_is_a_pinned_dependency_the_installed_one_meets():
    """The worker drives huggingface_hub's own API (HfApi.model_info(files_metadata=True),
    snapshot_download, the blobs' .incomplete files): a dependency, pinned below 1.0."""
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = [r for r in map(Requirement, deps) if canonicalize_name(r.name) == "huggingface-hub"]
    assert len(pins) == 1, deps
    spec = pins[0].specifier
    assert version("huggingface_hub") in spec
    assert "1.0" not in spec and "0.22.2" not in spec and "0.23.0" in spec
