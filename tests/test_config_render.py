"""The Config step's engine: ast edits, the tutorial's edits, profiles, --set, writing."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from engine.config import (
    TUTORIAL_BASE,
    builtin_path,
    diff_text,
    estimate_for,
    list_builtin,
    render_config,
    settings_of_text,
    write_config,
)
from engine.config.diff import changed_lines
from engine.config.profiles import Gpu, Hardware
from engine.config.render import Code, ConfigSource
from engine.errors import HandEditedError, WizardError

# The edited config listed in the tutorial (../shared/seed/000_eaf7a5d0abacac34.txt), verbatim.
TUTORIAL_CONFIG = (
    Path(__file__).parent / "data" / "tutorial" / "internlm2_chat_1_8b_qlora_alpaca_e3_copy.py"
)
TUTORIAL_MODEL = "/root/InternLM/XTuner/Shanghai_AI_Laboratory/internlm2-chat-1_8b"
TUTORIAL_DATA = "datas/assistant.json"
H200 = Hardware([Gpu("NVIDIA H200", 139.8)], "test")
GPU_8GB = Hardware([Gpu("NVIDIA GeForce RTX 3070", 8.0)], "test")

# internlm2-chat-1_8b's config.json (dimensions only: profiles read sizes, never weights)
INTERNLM2_1_8B_CONFIG = {
    "architectures": ["InternLM2ForCausalLM"],
    "model_type": "internlm2",
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "intermediate_size": 8192,
    "vocab_size": 92544,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
}


def tutorial_listing() -> str:
    """The tutorial's own edited config (the listing in the seed)."""
    return TUTORIAL_CONFIG.read_text(encoding="utf-8")


@pytest.fixture
def big_model(tmp_path: Path) -> Path:
    d = tmp_path / "internlm2-chat-1_8b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(INTERNLM2_1_8B_CONFIG))
    return d


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    p = tmp_path / "assistant.json"
    rec = {"conversation": [{"input": "请介绍一下你自己", "output": "我是伍鲜同志的小助手"}]}
    p.write_text(json.dumps([rec] * 10, ensure_ascii=False), encoding="utf-8")
    return p


# -- the ast editor -----------------------------------------------------------------------
SAMPLE = """\
import torch
x = 1  # keep me
name = "中文"
inline = dict(type=A, a=1, b=2)
exploded = dict(
    type=B,
    inner=dict(
        c=3,
        d="é",
    ),
)
hooks = [dict(type=H1, n=1), dict(type=H2, n=2)]
"""


def test_source_set_keeps_everything_else():
    src = ConfigSource(SAMPLE)
    src.set("x", 2)
    src.set("name", "新的")
    assert src.text.splitlines()[1] == "x = 2  # keep me"
    assert src.get("name") == "新的"
    assert src.text.replace("x = 2", "x = 1").replace('"新的"', '"中文"') == SAMPLE


def test_source_keywords_inline_and_exploded():
    src = ConfigSource(SAMPLE)
    src.set_kw(("inline",), "c", 3)  # added inline
    src.set_kw(("exploded", "inner"), "e", Code("torch.float32"))  # added on its own line
    src.set_kw(("exploded", "inner"), "d", "ü")  # after a multi-byte column
    src.set_kw(("hooks", "[type=H2]"), "n", 5)
    assert "inline = dict(type=A, a=1, b=2, c=3)" in src.text
    assert '        d="ü",\n        e=torch.float32,\n    ),' in src.text
    assert "dict(type=H2, n=5)" in src.text
    assert src.remove_kw(("inline",), "a")
    assert src.remove_kw(("inline",), "c")  # the last one: takes the comma before it
    assert "inline = dict(type=A, b=2)" in src.text
    assert src.remove_kw(("exploded",), "inner")  # a multi-line keyword, whole lines
    assert "exploded = dict(\n    type=B,\n)" in src.text
    assert not src.remove_kw(("exploded",), "missing")
    ast.parse(src.text)


def test_source_refuses_broken_python():
    with pytest.raises(WizardError, match="not valid Python"):
        ConfigSource("x = (", name="c.py")


# -- built-ins ------------------------------------------------------------------------------
def test_builtin_list_matches_xtuner():
    from xtuner.configs import cfgs_name_path  # xtuner's own mapping (no heavy imports)

    assert list_builtin() == sorted(cfgs_name_path)
    assert TUTORIAL_BASE in list_builtin("InternLM2_chat_1_8b")
    assert all("qwen" in n.lower() for n in list_builtin("qwen"))
    assert builtin_path(TUTORIAL_BASE) == Path(cfgs_name_path[TUTORIAL_BASE])


def test_unknown_base_names_close_ones():
    with pytest.raises(WizardError) as err:
        builtin_path("internlm2_chat_1_8b_qlora_alpaca_e4")
    assert "internlm2_chat_1_8b_qlora_alpaca_e3" in str(err.value)


# -- the tutorial's profile equals the tutorial's listing ---------------------------------
def test_tutorial_profile_equals_the_seed_listing_setting_by_setting():
    """Except the lr warm-up: counted in iterations, as every profile's (issue 15)."""
    rendered = render_config(model_path=TUTORIAL_MODEL, data_path=TUTORIAL_DATA, profile="tutorial")
    expected = settings_of_text(tutorial_listing(), "seed")
    assert rendered.settings.pop("warmup_iters") == 48  # no data here: 3 optimizer steps
    assert rendered.settings == expected
    assert rendered.settings["pretrained_model_name_or_path"] == TUTORIAL_MODEL
    assert rendered.settings["lr"] == 2e-4 and rendered.settings["accumulative_counts"] == 16
    assert rendered.settings["quantization"] == "nf4" and rendered.settings["amp"] == "float16"
    # and every dict the trainer builds (model, dataset, optimizer, hooks) as well
    seed_src, ours = ConfigSource(tutorial_listing()), ConfigSource(rendered.text)
    assert [n for n in ours.names() if n != "warmup_iters"] == seed_src.names()
    for name in seed_src.names():
        if name != "param_scheduler":
            assert ast.dump(seed_src.value_node(name)) == ast.dump(ours.value_node(name)), name


def test_tutorial_diff_shows_the_tutorials_edits_and_nothing_else():
    rendered = render_config(model_path=TUTORIAL_MODEL, data_path=TUTORIAL_DATA, profile="tutorial")
    removed, added = changed_lines(diff_text(rendered))
    assert [line.split("=")[0].strip() for line in removed] == [
        "pretrained_model_name_or_path",
        "alpaca_en_path",
        "evaluation_inputs",
        "dataset",
        "dataset_map_fn",
        "by_epoch",  # and the warm-up in iterations (issue 15)
        "end",
        "convert_to_iter_based",
        "begin",
    ]
    assert [line.strip() for line in added] == [
        f'pretrained_model_name_or_path = "{TUTORIAL_MODEL}"',
        f'alpaca_en_path = "{TUTORIAL_DATA}"',
        "# xtuner-wizard: lr warm-up in iterations (see engine/config/settings.py)",
        "warmup_iters = 48",
        'evaluation_inputs = ["请介绍一下你自己", "Please introduce yourself"]',
        'dataset=dict(type=load_dataset, path="json", data_files=dict(train=alpaca_en_path)),',
        "dataset_map_fn=None,",
        "by_epoch=False,",
        "end=warmup_iters,",
        "begin=0,",
    ]


# -- profiles -------------------------------------------------------------------------------
def _load(text: str, tmp_path: Path, name: str):
    from engine.xtuner_env import ensure_xtuner_importable_here

    ensure_xtuner_importable_here()
    from mmengine.config import Config

    path = tmp_path / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    return Config.fromfile(str(path))


@pytest.mark.parametrize(
    "profile,hardware,resolved",
    [
        ("tutorial", None, "tutorial"),
        ("cpu", None, "cpu"),
        ("auto", Hardware(), "cpu"),
        ("qlora", GPU_8GB, "qlora"),
        ("lora", H200, "lora"),
        ("auto", H200, "lora"),
        ("auto", GPU_8GB, "qlora"),
    ],
)
def test_each_profile_loads_with_mmengine(
    tmp_path, big_model, dataset, profile, hardware, resolved
):
    rendered = render_config(
        model_path=big_model, data_path=dataset, profile=profile, hardware=hardware
    )
    assert rendered.profile == resolved
    cfg = _load(rendered.text, tmp_path, f"{profile}_{resolved}")
    assert cfg.model.llm.pretrained_model_name_or_path == str(big_model)
    assert cfg.alpaca_en.dataset.data_files == {"train": str(dataset)}
    assert cfg.alpaca_en.dataset_map_fn is None
    llm = cfg.model.llm
    if resolved == "cpu":
        import torch

        assert "quantization_config" not in llm and llm.torch_dtype == torch.float32
        assert cfg.optim_wrapper.type.__name__ == "OptimWrapper"
        assert "loss_scale" not in cfg.optim_wrapper and "dtype" not in cfg.optim_wrapper
        assert cfg.env_cfg.dist_cfg.backend == "gloo"
        assert cfg.default_hooks.logger.interval == 1
        # 48 (the cpu profile's), lowered to what the dataset's 7-token answer needs
        assert cfg.custom_hooks[1].max_new_tokens == 32
    if resolved == "qlora":
        assert llm.quantization_config.bnb_4bit_quant_type == "nf4"
        assert cfg.batch_size == 1  # 8 GB: the tutorial's batch
    if resolved == "lora":
        assert "quantization_config" not in llm
        assert cfg.optim_wrapper.dtype == "bfloat16"
        assert llm.attn_implementation == "sdpa"
        assert cfg.batch_size == 8 and cfg.accumulative_counts == 2
        assert cfg.model.use_activation_checkpointing is False


def test_demo_model_gets_the_demo_sizing(tmp_path, dataset):
    demo = tmp_path / "demo"
    demo.mkdir()
    tiny = dict(
        INTERNLM2_1_8B_CONFIG,
        hidden_size=256,
        num_hidden_layers=4,
        vocab_size=2000,
        intermediate_size=512,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    (demo / "config.json").write_text(json.dumps(tiny))
    r = render_config(model_path=demo, data_path=dataset, profile="cpu")
    s = r.settings
    assert r.demo
    assert (s["lr"], s["save_steps"], s["evaluation_freq"], s["SYSTEM"], s["max_length"]) == (
        2e-3,
        32,
        16,
        "",
        256,
    )
    assert "lr = 2e-3" in r.text


def test_set_overrides_and_unknown_keys(big_model, dataset):
    r = render_config(
        model_path=big_model,
        data_path=dataset,
        profile="tutorial",
        set_args=["max_length=1024", "lr=1e-4", "SYSTEM='be brief'", "max_iters=2", "lora_r=16"],
    )
    s = r.settings
    assert (s["max_length"], s["lr"], s["SYSTEM"], s["max_iters"], s["lora_r"]) == (
        1024,
        1e-4,
        "be brief",
        2,
        16,
    )
    assert "train_cfg = dict(type=TrainLoop, max_iters=2)" in r.text
    with pytest.raises(WizardError) as err:
        render_config(
            model_path=big_model, data_path=dataset, set_args=["max_lenght=5"], profile="tutorial"
        )
    assert "max_lenght" in str(err.value) and "max_length" in str(err.value)
    for bad in ("max_length=abc", "lr=True", "quantization='nf8'", "batch_size"):
        with pytest.raises(WizardError):
            render_config(
                model_path=big_model, data_path=dataset, set_args=[bad], profile="tutorial"
            )


def test_missing_model_folder_is_one_clear_error(tmp_path, dataset):
    with pytest.raises(WizardError, match="model folder not found"):
        render_config(model_path=tmp_path / "nope", data_path=dataset, profile="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WizardError, match="no config.json"):
        render_config(model_path=tmp_path / "empty", data_path=dataset, profile="cpu")


# -- writing into the workspace -------------------------------------------------------------
def test_write_config_never_clobbers_a_hand_edit(workspace, big_model, dataset):
    r = render_config(model_path=big_model, data_path=dataset, profile="cpu")
    path = write_config(workspace, r)
    assert path == workspace.root / f"{TUTORIAL_BASE}_copy.py"
    assert workspace.load_state().choices["config"] == path.name
    write_config(workspace, r)  # unchanged since written: replaced silently
    path.write_text(path.read_text() + "\n# my own change\n", encoding="utf-8")
    edited = path.read_text()
    with pytest.raises(HandEditedError):
        write_config(workspace, r)
    assert path.read_text() == edited
    write_config(workspace, r, force=True)
    assert path.read_text() == r.text
    backups = list(workspace.backups_dir.iterdir())
    assert len(backups) == 1 and backups[0].read_text() == edited


def test_auto_detects_gpus_through_nvidia_smi(tmp_path, monkeypatch, big_model, dataset):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771'\necho 'NVIDIA H200, 143771'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.delenv("XTUNER_WIZARD_GPUS", raising=False)
    from engine.config import detect_hardware

    hw = detect_hardware()
    if hw.source == "nvml":
        pytest.skip("a real GPU answered through NVML")
    assert [(g.name, round(g.total_gib)) for g in hw.gpus] == [("NVIDIA H200", 140)]
    rendered = render_config(model_path=big_model, data_path=dataset, profile="auto")
    assert rendered.profile == "lora" and rendered.settings["batch_size"] == 8


def test_gpus_can_be_named_for_sizing_elsewhere(monkeypatch, big_model, dataset):
    from engine.config import detect_hardware

    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "NVIDIA GeForce RTX 3070:8")
    assert detect_hardware().describe() == "NVIDIA GeForce RTX 3070 (8 GiB)"
    rendered = render_config(model_path=big_model, data_path=dataset, profile="auto")
    assert rendered.profile == "qlora" and rendered.settings["batch_size"] == 1
    monkeypatch.setenv("XTUNER_WIZARD_GPUS", "none")
    assert render_config(model_path=big_model, data_path=dataset).profile == "cpu"


# -- a run capped at max_iters schedules its learning rate in iterations -----------------------
def _lrs(cfg, iters: int, epoch_length: int) -> list[float]:
    """The lr mmengine's own schedulers give each iteration (what the runner builds)."""
    import torch
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    kinds = {"LinearLR": LinearLR, "CosineAnnealingLR": CosineAnnealingLR}
    scheds = []
    for s in cfg.param_scheduler:
        args = {k: v for k, v in s.items() if k not in ("type", "convert_to_iter_based")}
        cls = kinds[s["type"].__name__]
        if s.get("convert_to_iter_based"):
            scheds.append(cls.build_iter_from_epoch(opt, epoch_length=epoch_length, **args))
        else:
            scheds.append(cls(opt, **args))
    lrs = []
    for _ in range(iters):
        lrs.append(opt.param_groups[0]["lr"])
        for sched in scheds:
            sched.step()
    return lrs


def _big_dataset(tmp_path: Path, n: int) -> Path:
    from engine.data.generate import generate_tutorial

    p = tmp_path / f"assistant-{n}.json"
    p.write_text(json.dumps(generate_tutorial("伍鲜同志", n), ensure_ascii=False), encoding="utf-8")
    return p


def test_every_rendered_schedule_warms_up_in_iterations_and_peaks(tmp_path, big_model, dataset):
    """Small and large datasets, capped or not, every profile: mmengine's schedulers built from
    the rendered config reach the configured lr after a warm-up of >= 3 optimizer steps (or 2
    iterations) that is at most a tenth of the run."""
    from engine.config.settings import warmup_iters

    large = _big_dataset(tmp_path, 8000)  # the tutorial's 16,002 records
    small = _big_dataset(tmp_path, 300)  # ~4 packed batches of 8 an epoch
    cases = [
        # (profile, hardware, data, set_args, the epoch length the runner sees: None = the
        # estimate's; another one checks that the rule does not depend on the estimate)
        ("lora", H200, small, [], None),
        ("lora", H200, large, [], 16),  # the H200 run: 16 iterations an epoch
        ("auto", H200, large, [], None),
        ("auto", H200, large, [], 8),
        ("tutorial", None, large, [], None),  # batch 1 x 16 accumulated
        ("cpu", None, small, [], None),
        ("lora", H200, dataset, ["max_iters=30"], 1),
        ("qlora", GPU_8GB, large, ["max_iters=7"], 352),
    ]
    for profile, hw, data, sets, epoch_length in cases:
        r = render_config(
            model_path=big_model, data_path=data, profile=profile, hardware=hw, set_args=sets
        )
        name = f"{profile}_{data.stem}_{len(sets)}_{epoch_length}".replace("-", "_")
        cfg = _load(r.text, tmp_path, name)
        estimated = _est(r, data)
        if epoch_length is None:
            epoch_length = max(1, round(estimated / cfg.max_epochs))
        total = cfg.train_cfg.get("max_iters") or cfg.max_epochs * epoch_length
        lrs = _lrs(cfg, total, epoch_length=epoch_length)
        warm, acc = cfg.warmup_iters, cfg.accumulative_counts
        assert warm == warmup_iters(estimated, acc, cfg.warmup_ratio), name
        assert lrs[0] < 1e-8, name
        # at least 97% of lr; a run of a few iterations (a cosine over 6 iterations chained
        # with a warm-up of 2) peaks at 87%, never at lr x 1e-5
        floor = 0.97 if total >= 10 * warm else 0.85
        assert cfg.lr * floor <= max(lrs) <= cfg.lr * (1 + 1e-9), name
        assert lrs.index(max(lrs)) == warm - 1, name  # the warm-up's last iteration
        assert warm >= 2 and (warm >= 3 * acc or warm <= max(2, estimated // 10)), name
        assert lrs[-1] < 0.1 * cfg.lr and lrs[-1] < lrs[warm], name  # annealed at the end


def _est(rendered, data: Path) -> int:
    from engine.config.api import total_iterations

    return total_iterations(ConfigSource(rendered.text), data)


def test_warmup_rule():
    from engine.config.settings import warmup_iters

    assert warmup_iters(48, 2) == 4  # 3 optimizer steps would be 6: a tenth of 48 caps it
    assert warmup_iters(1056, 16) == 48  # the tutorial: 3 optimizer steps of 16
    assert warmup_iters(10_000, 1) == 300  # warmup_ratio 0.03 of a long run
    assert warmup_iters(3, 1) == 2 and warmup_iters(1, 1) == 2  # never 0 or 1


def test_max_iters_schedule_counts_iterations(tmp_path, big_model, dataset):
    capped = render_config(
        model_path=big_model,
        data_path=dataset,
        profile="lora",
        hardware=H200,
        set_args=["max_iters=30"],
    )
    cfg = _load(capped.text, tmp_path, "capped")
    warm, cosine = cfg.param_scheduler
    assert (warm.by_epoch, warm.end, cosine.begin, cosine.end) == (False, 3, 3, 30)
    lrs = _lrs(cfg, 30, epoch_length=4)
    assert lrs[0] < 1e-8 and max(lrs) == pytest.approx(cfg.lr)
    assert lrs.index(max(lrs)) == 2
    assert lrs[-1] < lrs[15] < cfg.lr and lrs[-1] > 0
    # back to epochs: the cosine over max_epochs again, the warm-up kept in iterations
    from engine.config.settings import WIZARD_KEYS

    assert settings_of_text(capped.text)["max_iters"] == 30
    src = ConfigSource(capped.text)
    WIZARD_KEYS["max_iters"].set(src, None)
    full = _load(src.text, tmp_path, "uncapped")
    assert full.train_cfg.max_epochs == 3 and full.param_scheduler[1].by_epoch is True
    lrs = _lrs(full, 3 * 4, epoch_length=4)
    assert max(lrs) >= 0.9 * full.lr  # 3 of 12 iterations warming up, the cosine chained


# -- the run's shape: evaluation, dataset preparation, epoch ends (issue 15) --------------------
def test_evaluation_is_bounded_by_the_identity_answer_and_not_repeated(tmp_path, big_model):
    large = _big_dataset(tmp_path, 8000)
    r = render_config(model_path=big_model, data_path=large, profile="auto", hardware=H200)
    cfg = _load(r.text, tmp_path, "eval_h200")
    hook = cfg.custom_hooks[1]
    # the tutorial's longest answer is ~26 tokens (estimated): 2 x 26 + 16, not xtuner's 600
    assert 32 <= hook.max_new_tokens <= 80
    assert hook.prompt_template["STOP_WORDS"] == ["<|im_end|>"]  # xtuner stops at it
    # evaluation_freq 500 >= the run's ~48 iterations: only before and after training, not
    # at the last checkpoint and again after training (the same weights twice)
    assert hook.get("every_n_iters") is None
    assert any("before and after training only" in n for n in r.notes)
    assert cfg.default_hooks.logger.interval == 1  # ~1% of the run's ~100 iterations
    # a run long enough for evaluations on the way keeps them
    demo_like = render_config(
        model_path=big_model,
        data_path=large,
        profile="auto",
        hardware=H200,
        set_args=["max_iters=2000"],
    )
    assert _load(demo_like.text, tmp_path, "eval_long").custom_hooks[1].every_n_iters == 500
    # the user's own choice stays
    mine = render_config(
        model_path=big_model,
        data_path=large,
        profile="auto",
        hardware=H200,
        set_args=["max_new_tokens=300"],
    )
    assert _load(mine.text, tmp_path, "eval_mine").custom_hooks[1].max_new_tokens == 300


def _cores(monkeypatch, n: int) -> None:
    import os

    monkeypatch.delenv("XTUNER_WIZARD_CPUS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)


def test_dataset_map_workers_follow_the_usable_cores(tmp_path, big_model, dataset, monkeypatch):
    large = _big_dataset(tmp_path, 2000)  # 4,002 records: whole samples of 2048 in every shard
    for cores, want in ((4, 4), (1, 1), (16, 16)):
        _cores(monkeypatch, cores)
        r = render_config(model_path=big_model, data_path=large, profile="lora", hardware=H200)
        cfg = _load(r.text, tmp_path, f"procs{want}")
        assert (cfg.alpaca_en.map_num_proc, cfg.max_length) == (want, 2048)
    _cores(monkeypatch, 128)  # xtuner's 32 at most: its own default, no line
    r = render_config(model_path=big_model, data_path=large, profile="lora", hardware=H200)
    assert "map_num_proc" not in r.text
    monkeypatch.setenv("XTUNER_WIZARD_CPUS", "3")  # a config sized for another machine
    r = render_config(model_path=big_model, data_path=large, profile="lora", hardware=H200)
    assert r.settings["map_num_proc"] == 3
    _cores(monkeypatch, 4)
    tut = render_config(model_path=big_model, data_path=large, profile="tutorial")
    assert "map_num_proc" not in tut.text  # the tutorial as it is: xtuner's 32
    mine = render_config(
        model_path=big_model,
        data_path=large,
        profile="lora",
        hardware=H200,
        set_args=["map_num_proc=8"],
    )
    assert _load(mine.text, tmp_path, "procs_mine").alpaca_en.map_num_proc == 8
    # no dataset yet: nothing to size the packs by, xtuner's 32 stay
    none = render_config(
        model_path=big_model, data_path=tmp_path / "nope.json", profile="lora", hardware=H200
    )
    assert "map_num_proc" not in none.text


def test_a_small_dataset_packs_as_many_samples_with_the_usable_cores(
    tmp_path, big_model, monkeypatch
):
    """xtuner packs each map_num_proc shard on its own: the demo's 102 records make 32 short
    samples with its 32 shards, 7 of 256 tokens with 2 (21 iterations: the demo did not learn).
    On 2 cores the config prepares with 2 processes and packs shorter: as many samples."""
    from engine.config.api import total_iterations

    demo_data = _big_dataset(tmp_path, 50)  # the demo's data: 102 records
    _cores(monkeypatch, 2)
    r = render_config(model_path=big_model, data_path=demo_data, profile="cpu")
    cfg = _load(r.text, tmp_path, "small2")
    assert cfg.alpaca_en.map_num_proc == 2
    assert 32 <= cfg.max_length < 128  # the 32 shards' samples: ~64 tokens (of 256)
    assert any(n.startswith("dataset: 2 processes (the usable cores)") for n in r.notes)
    steps = total_iterations(ConfigSource(r.text), demo_data)
    assert steps >= 90  # ~96 with xtuner's 32 shards; the identity needs that many
    assert estimate_for(r, demo_data).total_iters == steps
    # a machine of 16 cores: at most 4 processes pack short (each drops its last sample's rest)
    _cores(monkeypatch, 16)
    r16 = render_config(model_path=big_model, data_path=demo_data, profile="cpu")
    assert r16.settings["map_num_proc"] == 4 and r16.settings["max_length"] < 128
    assert any("4 processes (of 16 cores)" in n for n in r16.notes)
    # the user's max_length is theirs: xtuner's 32 shards keep the samples (and the tutorial's
    # own sizes are never changed)
    _cores(monkeypatch, 2)
    fixed = render_config(
        model_path=big_model, data_path=demo_data, profile="cpu", set_args=["max_length=256"]
    )
    assert "map_num_proc" not in fixed.text and fixed.settings["max_length"] == 256
    assert total_iterations(ConfigSource(fixed.text), demo_data) >= 90
    tut = render_config(model_path=big_model, data_path=demo_data, profile="tutorial")
    assert "map_num_proc" not in tut.text and tut.settings["max_length"] == 2048


def test_xtuner_packs_the_rendered_demo_config_into_as_many_samples(
    tmp_path, demo_model_dir, monkeypatch
):
    """The real thing: xtuner's process_hf_dataset on the demo config rendered for 2 cores
    (its tokenizer, its 2 processes) makes at least the 32 samples an epoch that xtuner's 32
    processes make, none longer than theirs (~64 tokens), and the estimate counts them."""
    from xtuner.registry import BUILDER

    demo_data = _big_dataset(tmp_path, 50)
    _cores(monkeypatch, 2)
    r = render_config(model_path=demo_model_dir, data_path=demo_data)
    cfg = _load(r.text, tmp_path, "demo2")
    assert cfg.alpaca_en.map_num_proc == 2
    cfg.alpaca_en.dataset.cache_dir = str(tmp_path / "hf-cache")
    packed = BUILDER.build(cfg.alpaca_en)
    lengths = [len(ids) for ids in packed["input_ids"]]
    assert len(lengths) >= 32 and max(lengths) <= 64, lengths
    est = estimate_for(r, demo_data)
    assert 0.8 * len(lengths) <= est.iters_per_epoch <= 1.2 * len(lengths)
    assert est.total_iters >= 90


def test_no_sleep_at_epoch_ends_and_the_data_order_is_xtuners(tmp_path, big_model, dataset):
    import mmengine.runner.loops as loops

    real = loops.time
    try:
        r = render_config(model_path=big_model, data_path=dataset, profile="lora", hardware=H200)
        cfg = _load(r.text, tmp_path, "nosleep")
        assert loops.time is not real and loops.time.sleep(2) is None  # returns at once
        # same sampler, same epochs: only the sleep between them goes
        assert cfg.train_dataloader.sampler.type.__name__ == "DefaultSampler"
        assert cfg.train_cfg.max_epochs == 3 and cfg.train_dataloader.num_workers == 0
    finally:
        loops.time = real
    tut = render_config(model_path=big_model, data_path=dataset, profile="tutorial")
    assert "mmengine.runner.loops" not in tut.text
