"""Render the tutorial's config from xtuner's built-in one, apply a profile, write it.

The pipeline: the built-in file (what ``xtuner copy-cfg`` copies) -> the tutorial's edits
(model path, data path, JSON loading, ``dataset_map_fn=None``, evaluation inputs) -> the
profile's settings -> the user's ``--set`` overrides. Every edit goes through
:class:`engine.config.render.ConfigSource` (ast positions), so the rest of the file stays
what xtuner shipped.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.builtin import TUTORIAL_BASE, builtin_path
from engine.config.estimate import (
    PACK_SHARDS,
    DatasetSize,
    ModelSize,
    Pick,
    Plan,
    RunEstimate,
    approx_tokens,
    data_preparation,
    dataset_size,
    estimate_run,
    iterations_per_epoch,
    model_size,
    size_from_hf_config,
)
from engine.config.profiles import (
    PROFILES,
    Hardware,
    detect_hardware,
    profile_settings,
    resolve_profile,
)
from engine.config.render import Code, ConfigSource
from engine.config.settings import (
    EVAL_HOOK,
    apply_setting,
    defined_names,
    parse_assignment,
    parse_value,
    read_settings,
    set_schedule,
)
from engine.errors import WizardError

if TYPE_CHECKING:
    from engine.workspace import Workspace

TUTORIAL_EVAL_INPUTS = ["请介绍一下你自己", "Please introduce yourself"]
TUTORIAL_DATA_PATH = "datas/assistant.json"
JSON_DATASET = 'dict(type=load_dataset, path="json", data_files=dict(train={var}))'


@dataclass
class RenderedConfig:
    text: str
    base_text: str
    base_name: str
    profile: str  # resolved: tutorial | cpu | qlora | lora
    settings: dict[str, Any]
    requested_profile: str = "auto"
    notes: list[str] = field(default_factory=list)
    pick: Pick | None = None
    hardware: Hardware | None = None
    size: ModelSize | None = None
    demo: bool = False

    @property
    def default_filename(self) -> str:
        return f"{self.base_name}_copy.py"

    def settings_json(self) -> dict[str, Any]:
        """The settings with code (``torch.float16``, ``SYSTEM_TEMPLATE.alpaca``) as text."""
        return {k: (v.text if isinstance(v, Code) else v) for k, v in self.settings.items()}

    def plan(self) -> Plan:
        """The memory-relevant settings, for the estimate."""
        s = self.settings
        return Plan(
            quantization=s.get("quantization"),
            dtype=str(s.get("torch_dtype") or "float16"),
            lora_r=s.get("lora_r"),
            batch_size=int(s.get("batch_size") or 1),
            max_length=int(s.get("max_length") or 2048),
            checkpointing=bool(s.get("use_activation_checkpointing", True)),
            attention="sdpa" if s.get("attn_implementation") == "sdpa" else "eager",
        )


def estimate_for(
    rendered: RenderedConfig, data_path: str | Path | None, *, gpus: int = 1
) -> RunEstimate | None:
    """Memory per GPU, iterations and time of the rendered config (None: model size unknown).

    Every profile but ``cpu`` runs on the GPUs here, so their speed is used (the ``tutorial``
    profile renders without looking at the hardware: it is looked up here). The dataset's
    tokens are counted with the model's tokenizer files when they are there
    (:func:`token_counter`), else approximated from the characters.

    ``gpus``: the processes the run is launched with (the Config step's launch choice, the
    ``gpus`` choice; 1 by default, as ``train`` starts it), not the GPUs found here: each
    takes its own share of the dataset, so it divides the iterations.
    """
    if rendered.size is None:
        return None
    s = rendered.settings
    hw = rendered.hardware
    if hw is None:
        hw = detect_hardware() if rendered.profile != "cpu" else Hardware()
    gpu = hw.pairs()[0] if hw.gpus and rendered.profile != "cpu" else None
    dataset = config_dataset_size(s, Path(data_path)) if data_path else None
    epochs = s.get("max_epochs")
    num_proc = s.get("map_num_proc")
    max_iters = s.get("max_iters")
    return estimate_run(
        rendered.size,
        rendered.plan(),
        gpu=gpu,
        gpus=max(1, gpus) if gpu else 1,
        dataset=dataset,
        epochs=epochs if isinstance(epochs, (int, float)) else 3,
        pack=bool(s.get("pack_to_max_length", True)),
        max_iters=max_iters if isinstance(max_iters, int) else None,
        warmup_ratio=s.get("warmup_ratio")
        if isinstance(s.get("warmup_ratio"), float) and s.get("warmup_iters") is None
        else None,  # the warning is about xtuner's epoch-based warm-up
        shards=num_proc if isinstance(num_proc, int) else PACK_SHARDS,
    )


def config_dataset_size(settings: dict[str, Any], data_path: Path) -> DatasetSize | None:
    """The dataset's size as the config will see it: tokens counted with the tokenizer files of
    its model folder when they are there (:func:`token_counter`), else approximated. None when
    the file is missing or unreadable."""
    model = settings.get("pretrained_model_name_or_path")
    tokenizer_dir = Path(model) if isinstance(model, str) and Path(model).is_dir() else None
    if not data_path.is_file():
        return None
    try:
        return dataset_size(data_path, tokenizer_dir)
    except (OSError, ValueError, WizardError):
        return None


def _dataset_dict_name(src: ConfigSource) -> tuple[str, str | None]:
    """The top-level dataset dict (``alpaca_en``) and the variable holding its path."""
    for name, stmt in src.assignments().items():
        value = stmt.value
        if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Name):
            continue
        kws = {kw.arg: kw.value for kw in value.keywords}
        kind = kws.get("type")
        if kind is None or ast.unparse(kind) != "process_hf_dataset":
            continue
        inner = kws.get("dataset")
        var = None
        if isinstance(inner, ast.Call):
            for kw in inner.keywords:
                if kw.arg == "path" and isinstance(kw.value, ast.Name):
                    var = kw.value.id
        return name, var
    raise WizardError(
        "this base config does not train on a process_hf_dataset dataset",
        where=src.name,
        fix="pick a chat LoRA/QLoRA config such as internlm2_chat_1_8b_qlora_alpaca_e3",
    )


def apply_tutorial_edits(
    src: ConfigSource, *, model_path: str, data_path: str, eval_inputs: list[str]
) -> None:
    """The tutorial's edits: PART 1 paths and questions, PART 3 JSON loading."""
    if not src.has("pretrained_model_name_or_path"):
        raise WizardError(
            "this base config has no pretrained_model_name_or_path setting",
            where=src.name,
            fix="pick a chat LoRA/QLoRA config such as internlm2_chat_1_8b_qlora_alpaca_e3",
        )
    if not src.has_call(("model", "llm")):
        raise WizardError(
            "this base config does not fine-tune through xtuner's SupervisedFinetune "
            "(model=dict(..., llm=dict(...)))",
            where=src.name,
            fix="pick a chat LoRA/QLoRA config such as internlm2_chat_1_8b_qlora_alpaca_e3",
        )
    src.set("pretrained_model_name_or_path", str(model_path))
    dataset_name, path_var = _dataset_dict_name(src)
    if path_var is None:
        path_var = "data_path"
        src.set(path_var, str(data_path), after="pretrained_model_name_or_path")
    else:
        src.set(path_var, str(data_path))
    if src.has("evaluation_inputs"):
        src.set("evaluation_inputs", list(eval_inputs))
    src.set_kw((dataset_name,), "dataset", Code(JSON_DATASET.format(var=path_var)))
    src.set_kw((dataset_name,), "dataset_map_fn", None)


def _is_demo(model_path: Path, size: ModelSize | None) -> bool:
    return (model_path / "demo-model.json").exists() or (size is not None and size.is_tiny)


def render_config(
    *,
    model_path: str | Path,
    data_path: str | Path,
    profile: str = "auto",
    base: str | None = None,
    eval_inputs: Iterable[str] | None = None,
    overrides: dict[str, Any] | None = None,
    set_args: Iterable[str] | None = None,
    system: str | None = None,
    hardware: Hardware | None = None,
) -> RenderedConfig:
    """The tutorial's config for this model and dataset, under a profile.

    ``overrides``: settings with Python values; ``set_args``: ``KEY=VALUE`` strings as typed
    on the command line (parsed against the setting's current value). Unknown keys raise
    :class:`WizardError` naming the close ones. ``base`` None: the built-in config proposed for
    the model's family (:func:`proposed_base_for`; the tutorial's for InternLM2).
    """
    if profile not in PROFILES:
        raise WizardError(
            f"unknown profile {profile!r}",
            where="--profile",
            fix=f"use one of {', '.join(PROFILES)}",
        )
    model_dir = Path(model_path).expanduser()
    size: ModelSize | None
    if profile == "tutorial" and not (model_dir / "config.json").exists():
        size = None  # the tutorial's own paths need not exist here
    else:
        size = model_size(model_dir)
    demo = _is_demo(model_dir, size)

    base_file = builtin_path(base or proposed_base_for(model_dir))
    base_name = base_file.stem
    base_text = base_file.read_text(encoding="utf-8")
    src = ConfigSource(base_text, name=base_name)

    inputs = list(eval_inputs) if eval_inputs else list(TUTORIAL_EVAL_INPUTS)
    if not all(isinstance(q, str) and q.strip() for q in inputs):
        raise WizardError("evaluation inputs must be non-empty text", where="--eval")
    apply_tutorial_edits(
        src, model_path=str(model_path), data_path=str(data_path), eval_inputs=inputs
    )

    hw = hardware
    if hw is None and profile in ("auto", "qlora", "lora"):
        hw = detect_hardware()
    # The estimate must size for the settings the run will have: the user's, the demo's.
    wanted: dict[str, Any] = dict(overrides or {})
    for item in set_args or ():
        key, raw = parse_assignment(item)
        try:
            wanted[key] = parse_value(raw, read_settings(src).get(key), defined_names(src))
        except WizardError:
            continue  # reported when applied below
    max_length = wanted.get("max_length") or (256 if demo else src.get("max_length"))
    lora_r = wanted.get("lora_r") or src.get_kw(("model", "lora"), "r", 64)
    resolved, pick = resolve_profile(
        profile,
        hw or Hardware(),
        size or _default_size(),
        max_length=max_length if isinstance(max_length, int) else 2048,
        lora_r=lora_r if isinstance(lora_r, int) else 64,
        max_batch=1 if demo and "batch_size" not in wanted else 16,
    )
    settings, notes = profile_settings(
        resolved, size=size or _default_size(), pick=pick, demo=demo and resolved != "tutorial"
    )
    if system is not None:
        settings["SYSTEM"] = system
    for key, value in settings.items():
        try:
            apply_setting(src, key, value)
        except WizardError as exc:
            if "has no" not in exc.message and "unknown setting" not in exc.message:
                raise
            notes.append(f"{key} left alone: this base config has no such setting")
    for key, value in (overrides or {}).items():
        apply_setting(src, key, value)
    for item in set_args or ():
        key, raw = parse_assignment(item)
        current = read_settings(src).get(key)
        apply_setting(src, key, parse_value(raw, current, defined_names(src)))
    notes.extend(
        apply_run_shape(
            src,
            data_path=Path(data_path).expanduser(),
            tutorial=resolved == "tutorial",
            user_keys=set(wanted),
        )
    )

    return RenderedConfig(
        text=src.text,
        base_text=base_text,
        base_name=base_name,
        profile=resolved,
        settings=read_settings(src),
        requested_profile=profile,
        notes=notes,
        pick=pick,
        hardware=hw,
        size=size,
        demo=demo,
    )


# -- the run's shape: schedule, evaluation, data preparation (issue 15) ---------------------
EPOCH_STALL_PATCH = (
    '__import__("mmengine.runner.loops", fromlist=["time"]).time = '
    '__import__("types").SimpleNamespace(sleep=lambda s: None)'
    "  # xtuner-wizard: mmengine sleeps 2 s at every epoch's end (a guard for worker processes)"
)
MAX_EVAL_TOKENS = 600  # EvaluateChatHook's default


CPUS_ENV = "XTUNER_WIZARD_CPUS"  # N: size the dataset preparation for a machine of N cores


def usable_cpus() -> int:
    """The cores this process may run on (its affinity: a container's or taskset's share);
    ``XTUNER_WIZARD_CPUS`` overrides it (a config rendered for another machine, as
    ``XTUNER_WIZARD_GPUS`` does for GPUs)."""
    import os

    override = os.environ.get(CPUS_ENV, "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def map_workers(cpus: int | None = None) -> int:
    """Processes for xtuner's dataset preparation: the usable cores, at most xtuner's 32."""
    return max(1, min(PACK_SHARDS, usable_cpus() if cpus is None else cpus))


def _records(path: Path) -> list:
    import json

    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    return data if isinstance(data, list) else [data]


def answer_tokens(path: Path) -> int | None:
    """The longest answer of a conversation dataset, in (approximate) tokens."""
    try:
        records = _records(path)
    except (OSError, ValueError):
        return None
    outputs = {
        turn["output"]
        for rec in records
        if isinstance(rec, dict)
        for turn in rec.get("conversation", [])
        if isinstance(turn, dict) and isinstance(turn.get("output"), str)
    }
    return max((approx_tokens(o) for o in outputs), default=None)


def eval_token_cap(longest_answer: int) -> int:
    """New tokens an evaluation answer needs: twice the longest answer and a margin (a
    tokenizer may split finer than the estimate), at least 32, at most xtuner's 600."""
    return max(32, min(MAX_EVAL_TOKENS, 2 * longest_answer + 16))


def total_iterations(
    src: ConfigSource, data_path: Path, size: DatasetSize | None = None
) -> int | None:
    """The run's iterations: ``max_iters``, else epochs x the estimated epoch (one GPU), with
    the config's ``map_num_proc`` (``size``: the dataset's, when counted already)."""
    s = read_settings(src)
    if isinstance(s.get("max_iters"), int):
        return s["max_iters"]
    if size is None:
        size = config_dataset_size(s, data_path)
    if size is None:
        return None
    num_proc = s.get("map_num_proc")
    per_epoch = iterations_per_epoch(
        size.records,
        size.tokens,
        max_length=int(s.get("max_length") or 2048),
        batch_size=int(s.get("batch_size") or 1),
        pack=bool(s.get("pack_to_max_length", True)),
        shards=num_proc if isinstance(num_proc, int) else PACK_SHARDS,
    )
    epochs = s.get("max_epochs")
    return max(1, round(per_epoch * (epochs if isinstance(epochs, (int, float)) else 3)))


def prepare_dataset(
    src: ConfigSource, size: DatasetSize | None, *, length_fixed: bool = False
) -> str | None:
    """Dataset preparation sized to the machine (:func:`data_preparation`, the one rule):
    ``map_num_proc`` = the usable cores (at most xtuner's 32, the line left out at 32) and, for
    a dataset xtuner packs into short samples, the ``max_length`` that keeps their number.
    Returns the note saying so when the pack length changed."""
    s = read_settings(src)
    max_length = s.get("max_length")
    if not isinstance(max_length, int):
        return None
    cores = map_workers()
    prep = data_preparation(
        size,
        cores=cores,
        max_length=max_length,
        pack=bool(s.get("pack_to_max_length", True)),
        length_fixed=length_fixed,
    )
    if prep.num_proc != PACK_SHARDS:
        apply_setting(src, "map_num_proc", prep.num_proc)
    if prep.max_length == max_length or size is None:
        return None
    apply_setting(src, "max_length", prep.max_length)
    who = "the usable cores" if prep.num_proc == cores else f"of {cores} cores"
    return (
        f"dataset: {prep.num_proc} processes ({who}), packed to max_length {prep.max_length}: "
        f"~{prep.samples} samples an epoch, as with xtuner's 32"
    )


def apply_run_shape(
    src: ConfigSource, *, data_path: Path, tutorial: bool, user_keys: set[str]
) -> list[str]:
    """The edits every rendered config gets (after the profile and the user's settings):

    - the lr schedule with its warm-up in iterations, one rule for every profile
      (:func:`engine.config.settings.warmup_iters`);
    - except under ``tutorial`` (the tutorial as it is): dataset preparation on the usable
      cores (``map_num_proc``, at most xtuner's 32) with as many packed samples an epoch as
      xtuner's 32 make (:func:`prepare_dataset`); evaluation answers capped at what the
      dataset's longest answer needs (they stop earlier at the template's stop word: xtuner
      reads it from ``prompt_template``); no evaluation every ``evaluation_freq`` iterations
      when none would come before the last iteration (xtuner evaluates at the last checkpoint
      and again after training: the same weights twice); no 2 s sleep at each epoch's end;
      a log line at least every 1% of the run (a short run's loss curve, its last loss).
    Settings the user gave are left as they are. Returns notes."""
    notes: list[str] = []
    _dataset_dict_name(src)  # a config without a process_hf_dataset dataset is refused here
    size = config_dataset_size(read_settings(src), data_path)
    if not tutorial and "map_num_proc" not in user_keys:
        note = prepare_dataset(src, size, length_fixed="max_length" in user_keys)
        if note:
            notes.append(note)
    total = total_iterations(src, data_path, size)
    set_schedule(src, None if "warmup_iters" in user_keys else total)
    warm = src.get("warmup_iters") if src.has("warmup_iters") else None
    if isinstance(warm, int):
        notes.append(
            f"lr warm-up: {warm} iterations"
            + (f" of ~{total}" if total else "")
            + " (at least 3 optimizer steps, at most a tenth of the run)"
        )
    if tutorial:
        return notes
    logger = ("default_hooks", "logger")
    interval = src.get_kw(logger, "interval") if src.has_call(logger) else None
    if total and isinstance(interval, int) and "logger_interval" not in user_keys:
        every = max(1, min(interval, total // 100))  # a point at least every 1% of the run
        if every < interval:
            src.set_kw(logger, "interval", every)
    if not src.has_call(EVAL_HOOK):
        return notes
    if "max_new_tokens" not in user_keys and data_path.is_file():
        longest = answer_tokens(data_path)
        if longest:
            current = src.get_kw(EVAL_HOOK, "max_new_tokens", MAX_EVAL_TOKENS)
            cap = eval_token_cap(longest)
            if not isinstance(current, int) or cap < current:
                src.set_kw(EVAL_HOOK, "max_new_tokens", cap)
    freq = src.get("evaluation_freq") if src.has("evaluation_freq") else None
    if (
        "evaluation_freq" not in user_keys
        and total is not None
        and isinstance(freq, int)
        and freq >= total
        and src.get_kw(EVAL_HOOK, "every_n_iters") is not None
    ):
        src.remove_kw(EVAL_HOOK, "every_n_iters")
        notes.append(
            "evaluation: before and after training only (evaluation_freq "
            f"{freq} >= the run's ~{total} iterations)"
        )
    if EPOCH_STALL_PATCH not in src.text:
        nw = src.get("dataloader_num_workers") if src.has("dataloader_num_workers") else 0
        if nw == 0:  # the sleep guards worker processes; with none it only costs time
            src.insert_after_imports(EPOCH_STALL_PATCH)
    return notes


def fitting_configs_for(model_dir: str | Path) -> list[str]:
    """The built-in configs that fit a model folder's family (``model_type``), best first (the
    one written for the nearest size); empty when config.json is unreadable or the family has
    none."""
    from engine.config.builtin import configs_for_family

    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        return []
    try:
        params: float | None = size_from_hf_config(cfg).params
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        params = None
    return configs_for_family(cfg["model_type"], params)


def proposed_base_for(model_dir: str | Path) -> str:
    """The built-in config proposed for a model folder: its family's best fit; the tutorial's
    when there is none (``--base`` picks another)."""
    fits = fitting_configs_for(model_dir)
    return fits[0] if fits else TUTORIAL_BASE


def _default_size() -> ModelSize:
    from engine.config.estimate import INTERNLM2_CHAT_1_8B

    return INTERNLM2_CHAT_1_8B


def settings_of_text(text: str, name: str = "<config>") -> dict[str, Any]:
    """The settings of any config text (a hand-edited one, the tutorial's listing)."""
    return read_settings(ConfigSource(text, name=name))


def write_config(
    ws: Workspace, rendered: RenderedConfig, out: str | Path | None = None, *, force: bool = False
) -> Path:
    """Write the config into the workspace (a hand edit is never clobbered without force).

    Default name: ``<base>_copy.py`` in the workspace root (the tutorial's). Records the
    choice ``config`` (path relative to the workspace).
    """
    ws.ensure()
    path = ws.path(out) if out is not None else ws.root / rendered.default_filename
    if path.is_dir():
        path = path / rendered.default_filename
    ws.write_user_file(path, rendered.text, force=force)
    ws.set_choice("config", ws.rel(path))
    return path


@dataclass(frozen=True)
class TrainingInputs:
    """What a config will read and write, as a launch must check it first."""

    model: str | None  # pretrained_model_name_or_path
    data: str | None  # the dataset file (data_files / the dataset's path variable)
    lora_r: int | None  # None: no LoRA (the whole model is trained)
    save_total_limit: int | None
    save_steps: int | None
    max_iters: int | None


def _data_file_of(src: ConfigSource, settings: dict[str, Any]) -> str | None:
    """The dataset file a config trains on: ``data_files=...`` (the tutorial's
    ``dict(train=alpaca_en_path)``) or the dataset's ``path=`` variable."""
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.keyword) or node.arg not in ("data_files", "path"):
            continue
        value = node.value
        if isinstance(value, ast.Call) and value.keywords:  # dict(train=X)
            value = value.keywords[0].value
        elif isinstance(value, ast.Dict) and value.values:
            value = value.values[0]
        if isinstance(value, ast.Name) and isinstance(settings.get(value.id), str):
            return settings[value.id]
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            if node.arg == "data_files" or value.value.endswith((".json", ".jsonl")):
                return value.value
    return None


def training_inputs(config_path: str | Path) -> TrainingInputs:
    """Read a config file's model, dataset and checkpoint settings (never executes it)."""
    path = Path(config_path)
    try:
        text = path.read_text(encoding="utf-8")
        src = ConfigSource(text, name=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise WizardError(
            f"cannot read the config ({exc})",
            where=str(path),
            fix="render it again with `xtuner-wizard config`",
        ) from exc
    settings = read_settings(src)

    def integer(name: str) -> int | None:
        value = settings.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    model = settings.get("pretrained_model_name_or_path")
    return TrainingInputs(
        model=model if isinstance(model, str) else None,
        data=_data_file_of(src, settings),
        lora_r=integer("lora_r"),
        save_total_limit=integer("save_total_limit"),
        save_steps=integer("save_steps"),
        max_iters=integer("max_iters"),
    )
