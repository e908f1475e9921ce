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


def test_the_global_model_is_listed_first_by_models(layout, tmp_path, monkeypatch, capsys):
    """`xtuner-wizard --model DIR models`: the global --model is the listing's, not refused."""
    ws, roots, snap = layout
    monkeypatch.setenv("HF_HUB_CACHE", str(roots.hf_hub))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(roots.modelscope[0]))
    monkeypatch.setenv("XTUNER_WIZARD_SHARE_ROOTS", "")
    mine = write_model(tmp_path / "elsewhere" / "mine", LLAMA_CFG, {"m": ("F32", [4, 4])})
    monkeypatch.chdir(mine.parent)  # a relative --model is the shell's, as everywhere
    assert cli_main(["--workspace", str(ws), "--model", "mine", "models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]
    assert listed[0]["source"] == "--model" and listed[0]["path"] == str(mine)
    assert listed[0]["parameters"] == 16 and any(m["path"] == str(snap) for m in listed)
    assert cli_main(["--workspace", str(ws), "--model", str(mine), "models"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("mine  LlamaForCausalLM")
    # the same given both ways is one model; a folder that is no model is one line
    assert cli_main(["-w", str(ws), "--model", "mine", "models", "--model", "mine"]) == 0
    capsys.readouterr()
    assert cli_main(["--workspace", str(ws), "--model", str(tmp_path / "nothing"), "models"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a model folder" in err


def test_model_link_tutorial_links_the_hub_model_under_the_tutorials_name(
    tmp_path, monkeypatch, capsys
):
    """The real repo id, internlm/internlm2-chat-1_8b: by default linked as itself, with
    --tutorial as the tutorial's Shanghai_AI_Laboratory/internlm2-chat-1_8b."""
    from engine.models import TUTORIAL_LINK, is_tutorial_model, workspace_name
    from engine.workspace import Workspace

    hub = tmp_path / "hf"
    snap = hf_snapshot(
        hub,
        "internlm/internlm2-chat-1_8b",
        "b" * 40,
        {
            "config.json": json.dumps(INTERNLM2_CFG).encode(),
            "model.safetensors": safetensors_bytes({"w": ("BF16", [8, 8])}),
        },
    )
    qwen = write_model(tmp_path / "qwen", QWEN2_CFG, {"w": ("BF16", [8, 8])})
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("XTUNER_WIZARD_SHARE_ROOTS", "")
    ws = Workspace(tmp_path / "ws").ensure()
    entry = describe_model(snap, name="internlm/internlm2-chat-1_8b")
    assert is_tutorial_model(entry) and workspace_name(entry) == TUTORIAL_LINK
    assert workspace_name(entry, tutorial=False) == "internlm/internlm2-chat-1_8b"
    assert not is_tutorial_model(describe_model(qwen))

    base = ["--workspace", str(ws.root), "model", "link"]
    assert cli_main([*base, "internlm/internlm2-chat-1_8b"]) == 0
    own = ws.root / "internlm" / "internlm2-chat-1_8b"
    assert own.is_symlink() and own.resolve() == snap.resolve()
    assert cli_main([*base, "internlm/internlm2-chat-1_8b", "--tutorial"]) == 0
    assert f"linked {TUTORIAL_LINK} -> {snap}" in capsys.readouterr().out
    tutorial = ws.root / "Shanghai_AI_Laboratory" / "internlm2-chat-1_8b"
    assert tutorial.is_symlink() and tutorial.resolve() == snap.resolve()
    assert ws.load_state().choices["model"] == str(tutorial)
    assert cli_main([*base, str(snap), "--tutorial"]) == 0  # by its folder: the same link
    capsys.readouterr()
    # the tutorial's name is InternLM2's; --as and --tutorial are one or the other
    assert cli_main([*base, str(qwen), "--tutorial"]) == 2
    err = capsys.readouterr().err
    assert "qwen2 model" in err and "--as" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        cli_main([*base, str(qwen), "--tutorial", "--as", "a/b"])
    # a copy already in the workspace under the tutorial's name is chosen where it is
    other = Workspace(tmp_path / "ws2").ensure()
    copy = write_model(other.root / TUTORIAL_LINK, INTERNLM2_CFG, {"w": ("BF16", [8, 8])})
    assert cli_main(["-w", str(other.root), "model", "link", str(copy), "--tutorial"]) == 0
    assert other.load_state().choices["model"] == str(copy) and not copy.is_symlink()


def test_a_model_of_another_family_drops_the_chosen_config_base(tmp_path):
    """An InternLM2 base chosen in Config is not proposed for a Qwen2 model chosen next; a
    model of the same family (or a base that fits the new one) keeps it."""
    from engine.selection import set_model
    from engine.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    intern = write_model(tmp_path / "internlm2", INTERNLM2_CFG, {"w": ("BF16", [8, 8])})
    intern2 = write_model(tmp_path / "internlm2-b", INTERNLM2_CFG, {"w": ("BF16", [8, 8])})
    qwen = write_model(tmp_path / "qwen", QWEN2_CFG, {"w": ("BF16", [8, 8])})
    ws.set_choice("model", str(intern))
    ws.set_choice("config_base", "internlm2_chat_1_8b_qlora_alpaca_e3")

    set_model(ws, str(intern2))  # the same family: the base stays
    assert ws.load_state().choices["config_base"] == "internlm2_chat_1_8b_qlora_alpaca_e3"
    ws.set_choice("model", str(qwen))  # every writer of the choice goes through set_model
    choices = ws.load_state().choices
    assert choices["model"] == str(qwen) and "config_base" not in choices

    ws.set_choice("config_base", "qwen1_5_0_5b_chat_qlora_alpaca_e3")
    set_model(ws, "demo-qwen2")  # a demo name is its architecture's family, built or not
    assert ws.load_state().choices["config_base"] == "qwen1_5_0_5b_chat_qlora_alpaca_e3"
    set_model(ws, "demo")  # the InternLM2 demo model
    assert "config_base" not in ws.load_state().choices

    # a base chosen on purpose from another family survives a model of the same family...
    ws.set_choice("config_base", "llama2_7b_chat_qlora_alpaca_e3")
    set_model(ws, str(intern))
    assert ws.load_state().choices["config_base"] == "llama2_7b_chat_qlora_alpaca_e3"
    # ...and a model whose family can't be read changes nothing
    set_model(ws, str(tmp_path / "gone"))
    assert ws.load_state().choices["config_base"] == "llama2_7b_chat_qlora_alpaca_e3"
