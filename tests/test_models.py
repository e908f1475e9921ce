"""Finding the base model: fake hub caches, ModelScope folders and a share folder laid out on
disk as the real ones are (no network, no weights loaded)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from engine.cli import main as cli_main
from engine.models import SearchRoots, describe_model, discover, read_safetensors_header

INTERNLM2_CFG = {
    "architectures": ["InternLM2ForCausalLM"],
    "auto_map": {
        "AutoConfig": "configuration_internlm2.InternLM2Config",
        "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
    },
    "model_type": "internlm2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
    "torch_dtype": "bfloat16",
}
QWEN2_CFG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA_CFG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "vocab_size": 50,
}


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A valid .safetensors file: the header, then zeros for the data."""
    sizes = {"F32": 4, "BF16": 2, "F16": 2}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def write_model(folder: Path, cfg: dict, tensors: dict | None = None, *, extra=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if tensors is not None:
        (folder / "model.safetensors").write_bytes(safetensors_bytes(tensors))
    for name in extra:
        (folder / name).write_text("# code\n")
    return folder


def hf_snapshot(hub: Path, repo_id: str, rev: str, files: dict[str, bytes]) -> Path:
    """The Hugging Face cache layout: blobs by hash, snapshot files are relative symlinks."""
    import hashlib

    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snap), snap / name)
    return snap


@pytest.fixture
def layout(tmp_path: Path):
    """A workspace, a HF cache, a ModelScope cache (both layouts) and a share folder."""
    hub, ms, share, ws = (tmp_path / n for n in ("hf", "ms", "share", "ws"))
    tensors = {"w": ("BF16", [1000, 896]), "b": ("F32", [896])}
    snap = hf_snapshot(
        hub,
        "Qwen/Qwen2-0.5B-Instruct",
        "c0ffee" * 6 + "abcd",
        {
            "config.json": json.dumps(QWEN2_CFG).encode(),
            "model.safetensors": safetensors_bytes(tensors),
        },
    )
    # a second revision of the same repo shares the weights blob: counted once on disk
    old = snap.parent / "0ld"
    old.mkdir()
    for f in snap.iterdir():
        os.symlink(os.readlink(f), old / f.name)
    # a partial download: config only, no weights
    hf_snapshot(
        hub, "meta-llama/Llama-3.2-1B", "f" * 40, {"config.json": json.dumps(LLAMA_CFG).encode()}
    )
    write_model(
        ms / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b",
        INTERNLM2_CFG,
        {"a": ("BF16", [10, 64])},
        extra=("modeling_internlm2.py", "configuration_internlm2.py"),
    )
    write_model(ms / "models" / "Qwen" / "Qwen2___5-0___5B", QWEN2_CFG, {"x": ("F16", [7])})
    tutorial = write_model(
        share / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b",
        INTERNLM2_CFG,
        extra=("modeling_internlm2.py",),
    )
    (tutorial / "pytorch_model.bin").write_bytes(b"\0" * 1234)  # .bin: parameters estimated
    (share / "Shanghai_AI_Laboratory" / "notes").mkdir()  # not a model
    ws.mkdir()
    write_model(ws / "merged", LLAMA_CFG, {"m": ("F32", [3, 5])})
    roots = SearchRoots(hf_hub=hub, modelscope=(ms,), share=(share,))
    return ws, roots, snap


def test_every_place_is_searched_and_each_model_described(layout):
    ws, roots, snap = layout
    found = {(e.source, e.name): e for e in discover(ws, roots=roots)}
    assert set(found) == {
        ("workspace", "merged"),
        ("huggingface", "Qwen/Qwen2-0.5B-Instruct"),
        ("huggingface", "meta-llama/Llama-3.2-1B"),
        ("modelscope", "Shanghai_AI_Laboratory/internlm2-chat-1_8b"),
        ("modelscope", "Qwen/Qwen2.5-0.5B"),
        ("share", "Shanghai_AI_Laboratory/internlm2-chat-1_8b"),
    }
    qwen = found[("huggingface", "Qwen/Qwen2-0.5B-Instruct")]
    assert qwen.path == snap and qwen.revision == snap.name  # refs/main's snapshot, not "0ld"
    assert qwen.architecture == "Qwen2ForCausalLM" and qwen.family == "qwen2"
    assert qwen.parameters == 1000 * 896 + 896 and not qwen.parameters_estimated
    assert qwen.dtype == "bfloat16"
    weights = (snap / "model.safetensors").resolve().stat().st_size
    config = (snap / "config.json").resolve().stat().st_size
    assert qwen.size_bytes == weights + config  # symlinks followed, not the links' own size
    assert qwen.remote_code == [] and qwen.usable
    assert qwen.configs[0] == "qwen1_5_0_5b_chat_qlora_alpaca_e3"
    assert all(c.startswith("qwen1_5_") for c in qwen.configs)

    partial = found[("huggingface", "meta-llama/Llama-3.2-1B")]
    assert not partial.usable and "no weights" in partial.problems[0]
    assert partial.parameters_estimated and partial.parameters > 0
    assert partial.configs and all(c.startswith("llama") for c in partial.configs)

    ms = found[("modelscope", "Shanghai_AI_Laboratory/internlm2-chat-1_8b")]
    assert ms.remote_code == ["configuration_internlm2.py", "modeling_internlm2.py"]
    assert ms.parameters == 640 and ms.configs[0] == "internlm2_chat_1_8b_qlora_alpaca_e3"

    share = found[("share", "Shanghai_AI_Laboratory/internlm2-chat-1_8b")]
    # auto_map names configuration_internlm2.py although only modeling_internlm2.py is there
    assert share.remote_code == ["configuration_internlm2.py", "modeling_internlm2.py"]
    assert share.parameters_estimated and share.dtype == "bfloat16"  # from config.json
    assert share.usable and share.size_bytes > 1234


def test_a_model_reached_twice_is_listed_once_and_model_comes_first(layout):
    ws, roots, snap = layout
    (ws / "Shanghai_AI_Laboratory").mkdir()
    linked = ws / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b"
    linked.symlink_to(roots.share[0] / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b")
    entries = discover(ws, model=str(snap), roots=roots)
    assert entries[0].source == "--model" and entries[0].path == snap
    paths = [e.path.resolve() for e in entries]
    assert len(paths) == len(set(paths))
    assert [e.source for e in entries].count("share") == 0  # reached through the workspace
    assert any(e.name == "Shanghai_AI_Laboratory/internlm2-chat-1_8b" for e in entries)


def test_roots_come_from_the_hubs_own_variables(tmp_path: Path):
    env = {"HF_HOME": str(tmp_path / "hfhome"), "MODELSCOPE_CACHE": str(tmp_path / "msc")}
    roots = SearchRoots.from_env(env, home=tmp_path)
    assert roots.hf_hub == tmp_path / "hfhome" / "hub"
    assert tmp_path / "msc" in roots.modelscope
    assert roots.share == (Path("/root/share/new_models"), Path("/share/new_models"))
    env["HF_HUB_CACHE"] = str(tmp_path / "hubcache")
    env["XTUNER_WIZARD_SHARE_ROOTS"] = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])
    roots = SearchRoots.from_env(env, home=tmp_path)
    assert roots.hf_hub == tmp_path / "hubcache"
    assert roots.share == (tmp_path / "a", tmp_path / "b")
    bare = SearchRoots.from_env({}, home=tmp_path)
    assert bare.hf_hub == tmp_path / ".cache" / "huggingface" / "hub"
    assert bare.modelscope == (tmp_path / ".cache" / "modelscope" / "hub",)


def test_damaged_or_strange_folders_do_not_stop_the_search(tmp_path: Path):
    bad = write_model(tmp_path / "bad", QWEN2_CFG)
    (bad / "model.safetensors").write_bytes(b"\x05")
    entry = describe_model(bad)
    assert entry is not None and "damaged" in entry.problems[0]
    assert entry.parameters_estimated  # still sized from config.json
    (tmp_path / "notjson").mkdir()
    (tmp_path / "notjson" / "config.json").write_text("{")
    assert describe_model(tmp_path / "notjson") is None
    sharded = write_model(tmp_path / "sharded", QWEN2_CFG)
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    (sharded / "model-00002-of-00002.safetensors").write_bytes(safetensors_bytes({}))
    entry = describe_model(sharded)
    assert "missing shards: model-00001-of-00002.safetensors" in entry.problems
    # a dangling hub symlink (blob removed) counts nothing and breaks nothing
    os.symlink(tmp_path / "gone", sharded / "tokenizer.json")
    assert describe_model(sharded).size_bytes > 0
    assert read_safetensors_header(tmp_path / "sharded" / "model-00002-of-00002.safetensors") == {
        "__metadata__": {"format": "pt"}
    }


def test_models_command_lists_and_prints_json(layout, monkeypatch, capsys):
    ws, roots, snap = layout
    monkeypatch.setenv("HF_HUB_CACHE", str(roots.hf_hub))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(roots.modelscope[0]))
    monkeypatch.setenv("XTUNER_WIZARD_SHARE_ROOTS", str(roots.share[0]))
    assert cli_main(["--workspace", str(ws), "models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {(m["source"], m["name"]) for m in data["models"]}
    assert ("huggingface", "Qwen/Qwen2-0.5B-Instruct") in names and len(names) == 6
    qwen = next(m for m in data["models"] if m["name"] == "Qwen/Qwen2-0.5B-Instruct")
    assert qwen["path"] == str(snap) and qwen["configs"][0] == "qwen1_5_0_5b_chat_qlora_alpaca_e3"
    assert data["searched"]["huggingface"] == str(roots.hf_hub)

    assert cli_main(["--workspace", str(ws), "models"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "Qwen/Qwen2-0.5B-Instruct" in line)
    assert "Qwen2ForCausalLM" in line and "0.9M" in line and "bfloat16" in line
    assert "qwen1_5_0_5b_chat_qlora_alpaca_e3" in out
    assert "no weights" in out  # the partial download says why it is not usable
    assert "remote code: configuration_internlm2.py, modeling_internlm2.py" in out
