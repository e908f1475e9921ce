"""The settings of a config, by name: read and written through :class:`ConfigSource`.

Two kinds of keys:
- top-level settings (``max_length``, ``lr``, ``SYSTEM``, ...): the file's own assignments;
- wizard keys for things the built-in configs set deep inside dicts (``lora_r``,
  ``quantization``, ``attn_implementation``, ``max_iters``, ...), each with a reader and a
  writer that edit the right ``dict(...)`` call.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.builtin import close_matches
from engine.config.render import Code, ConfigSource, node_literal
from engine.errors import WizardError

MODEL = ("model",)
LLM = ("model", "llm")
LORA = ("model", "lora")
EVAL_HOOK = ("custom_hooks", "[type=EvaluateChatHook]")
LOGGER = ("default_hooks", "logger")
DIST = ("env_cfg", "dist_cfg")
OPTIM = ("optim_wrapper",)

CPU_BF16_PATCH = (
    '__import__("torch").cpu.is_bf16_supported = lambda *a, **k: False'
    "  # xtuner 0.2.0 calls it; CPU torch has none"
)
OPTIM_WRAPPER_IMPORT = "from mmengine.optim import OptimWrapper"
FUSED_KERNELS_PATCH = (
    '__import__("importlib.util").util.find_spec("engine") and '
    '__import__("engine.kernels", fromlist=["install"]).install()'
    "  # xtuner-wizard: fused kernels (liger-kernel) on CUDA: engine/kernels.py"
)

DTYPES = ("float16", "bfloat16", "float32")

# One-line explanations (the tutorial's table, plus the wizard's keys); the form shows them.
EXPLAIN: dict[str, str] = {
    "pretrained_model_name_or_path": "the model folder to fine-tune",
    "max_length": "most tokens per sample; longer ones are cut",
    "pack_to_max_length": "pack several short samples into one of max_length (faster)",
    "batch_size": "samples per GPU per step",
    "accumulative_counts": "backward passes per optimizer step (gradient accumulation)",
    "dataloader_num_workers": "processes loading data",
    "map_num_proc": "processes preparing the dataset (None: xtuner's 32; wizard: the usable cores)",
    "max_epochs": "passes over the dataset",
    "lr": "learning rate",
    "warmup_ratio": "share of training spent warming the learning rate up",
    "warmup_iters": "iterations of lr warm-up (wizard: warmup_ratio of the run, >= 3 optimizer "
    "steps, <= a tenth of it)",
    "weight_decay": "weight decay (regularisation)",
    "max_norm": "gradient clipping norm",
    "save_steps": "save a checkpoint every N iterations",
    "save_total_limit": "checkpoints kept (-1: all)",
    "evaluation_freq": "ask the evaluation questions every N iterations",
    "evaluation_inputs": "questions asked during training to watch the answers change",
    "SYSTEM": "system prompt used when asking the evaluation questions",
    "lora_r": "LoRA rank: size of the trained adapter",
    "lora_alpha": "LoRA scaling (alpha / r multiplies the adapter)",
    "lora_dropout": "dropout inside the adapter",
    "quantization": "nf4: load the base in 4 bits (QLoRA, least memory); None: full precision",
    "torch_dtype": "precision the base model is loaded in",
    "amp": "mixed precision of the optimizer wrapper (None: plain fp32, for CPUs)",
    "attn_implementation": "attention kernel: sdpa is faster; None leaves xtuner's choice",
    "use_activation_checkpointing": "recompute activations in backward: less memory, ~30% slower",
    "max_iters": "stop after N iterations (None: train max_epochs)",
    "max_new_tokens": "longest evaluation answer, in tokens (None: 600)",
    "logger_interval": "log a line every N iterations",
    "dist_backend": "distributed backend: nccl on GPUs, gloo on CPUs",
    "cpu_bf16_patch": "patch torch.cpu.is_bf16_supported (xtuner 0.2.0 needs it on CPUs)",
    "fused_kernels": "liger-kernel's fused RMSNorm, SwiGLU, rotary and linear cross-entropy, and "
    "no fp32 copy of LoRA inputs (CUDA; off by itself where liger-kernel is missing)",
}


@dataclass(frozen=True)
class WizardKey:
    get: Callable[[ConfigSource], Any]
    set: Callable[[ConfigSource, Any], None]
    kind: type | tuple[type, ...] | None = None  # accepted value types (None allowed always)


def _kw(path: tuple[str, ...], key: str, default: Any = None, *, drop_default: bool = False):
    def get(src: ConfigSource) -> Any:
        return src.get_kw(path, key, default)

    def put(src: ConfigSource, value: Any) -> None:
        if not src.has_call(path):
            raise WizardError(
                f"this base config has no {'/'.join(path)} to set {key} in",
                where=src.name,
                fix="pick another base config or leave the setting alone",
            )
        if value is None or (drop_default and value == default):
            src.remove_kw(path, key)
        else:
            src.set_kw(path, key, value)

    return get, put


def _dtype_code(name: str) -> Code:
    return Code(f"torch.{name}")


def _ensure_torch(src: ConfigSource) -> None:
    if "torch" not in defined_names(src):
        src.insert_after_imports("import torch")


def _get_dtype(src: ConfigSource) -> str | None:
    value = src.get_kw(LLM, "torch_dtype")
    if isinstance(value, Code) and value.text.startswith("torch."):
        return value.text.split(".", 1)[1]
    return None if value is None else str(value)


def _set_dtype(src: ConfigSource, value: str | None) -> None:
    if value is None:
        src.remove_kw(LLM, "torch_dtype")
        return
    _ensure_torch(src)
    src.set_kw(LLM, "torch_dtype", _dtype_code(value))
    if src.has_call((*LLM, "quantization_config")):
        src.set_kw((*LLM, "quantization_config"), "bnb_4bit_compute_dtype", _dtype_code(value))


def _get_quant(src: ConfigSource) -> str | None:
    q = (*LLM, "quantization_config")
    if not src.has_call(q):
        return None
    if src.get_kw(q, "load_in_4bit"):
        return src.get_kw(q, "bnb_4bit_quant_type", "nf4")
    if src.get_kw(q, "load_in_8bit"):
        return "int8"
    return None


def _quant_block(kind: str, dtype: str) -> Code:
    four = kind in ("nf4", "fp4")
    lines = [
        "dict(",
        "            type=BitsAndBytesConfig,",
        f"            load_in_4bit={four},",
        f"            load_in_8bit={not four},",
        "            llm_int8_threshold=6.0,",
        "            llm_int8_has_fp16_weight=False,",
        f"            bnb_4bit_compute_dtype=torch.{dtype},",
        "            bnb_4bit_use_double_quant=True,",
        f'            bnb_4bit_quant_type="{kind if four else "nf4"}",',
        "        )",
    ]
    return Code("\n".join(lines))


def _set_quant(src: ConfigSource, value: str | None) -> None:
    if value is None:
        src.remove_kw(LLM, "quantization_config")
        return
    if value not in ("nf4", "fp4", "int8"):
        raise WizardError(
            f"quantization must be nf4, fp4, int8 or None, not {value!r}",
            where="--set quantization",
            fix="use --set quantization='nf4' or --set quantization=None",
        )
    if _get_quant(src) == value:
        return
    _ensure_torch(src)
    if "BitsAndBytesConfig" not in src.text:
        src.insert_after_imports("from transformers import BitsAndBytesConfig")
    src.set_kw(LLM, "quantization_config", _quant_block(value, _get_dtype(src) or "float16"))


def _get_amp(src: ConfigSource) -> str | None:
    kind = src.get_kw(OPTIM, "type")
    if isinstance(kind, Code) and kind.text == "AmpOptimWrapper":
        return src.get_kw(OPTIM, "dtype", "float16")
    return None


def _set_amp(src: ConfigSource, value: str | None) -> None:
    if value is None:
        if _get_amp(src) is None:
            return
        src.insert_after_imports(OPTIM_WRAPPER_IMPORT)
        src.set_kw(OPTIM, "type", Code("OptimWrapper"))
        src.remove_kw(OPTIM, "loss_scale")
        src.remove_kw(OPTIM, "dtype")
        return
    if value not in DTYPES:
        raise WizardError(
            f"amp must be one of {', '.join(DTYPES)} or None, not {value!r}",
            where="--set amp",
            fix="use --set amp='bfloat16'",
        )
    if _get_amp(src) is None:
        src.set_kw(OPTIM, "type", Code("AmpOptimWrapper"))
        src.remove_line(OPTIM_WRAPPER_IMPORT)
        src.set_kw(OPTIM, "loss_scale", "dynamic")
    src.set_kw(OPTIM, "dtype", value)


def _get_max_iters(src: ConfigSource) -> int | None:
    return src.get_kw(("train_cfg",), "max_iters")


# xtuner's schedule (every built-in config): warm-up over a share of the epochs, then cosine.
EPOCH_SCHEDULE = """[
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=True,
        begin=0,
        end=warmup_ratio * max_epochs,
        convert_to_iter_based=True,
    ),
    dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_ratio * max_epochs,
        end=max_epochs,
        convert_to_iter_based=True,
    ),
]"""

# The wizard's rule for the warm-up, the same for every profile (see warmup_iters).
WARMUP_MIN_STEPS = 3  # optimizer steps
WARMUP_MAX_SHARE = 0.1  # of the run's iterations
WARMUP_NOTE = "# xtuner-wizard: lr warm-up in iterations (see engine/config/settings.py)"


def warmup_iters(total_iters: int, accumulative_counts: int = 1, warmup_ratio: float = 0.03) -> int:
    """Iterations of lr warm-up for a run of ``total_iters`` iterations.

    ``warmup_ratio`` of the run, but at least ``WARMUP_MIN_STEPS`` optimizer steps (each is
    ``accumulative_counts`` iterations) and at most ``WARMUP_MAX_SHARE`` of the run; never
    under 2 iterations: mmengine's LinearLR reaches the full lr at its last step (``end - 1``),
    so a 1-iteration warm-up never leaves its start factor (the run trains at lr x 1e-5), and
    a 0-iteration one is refused at start ("end should be larger than begin").
    """
    total = max(1, int(total_iters))
    acc = max(1, int(accumulative_counts or 1))
    want = max(round(float(warmup_ratio or 0) * total), WARMUP_MIN_STEPS * acc)
    cap = int(WARMUP_MAX_SHARE * total)
    return max(2, min(want, cap))


def iteration_schedule(max_iters: int | None) -> str:
    """xtuner's schedule with the warm-up counted in iterations (``warmup_iters``).

    The warm-up ramps lr x 1e-5 -> lr over ``warmup_iters`` iterations, whatever the length
    of an epoch, so no epoch length rounds it to 0 or 1 iteration (the run failing at start,
    or training at lr x 1e-5). A capped run anneals from there to ``max_iters``. An uncapped
    one's cosine spans the ``max_epochs`` epochs from iteration 0 (mmengine converts them with
    the real epoch length at start, unknown here) and chains with the warm-up (mmengine
    multiplies their factors): the peak is the cosine's value at the warm-up's end, >= 97.5%
    of lr with a warm-up of at most a tenth of the run (>= 98% for 2 of 12 iterations).
    """
    if max_iters is None:
        cosine = """dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True,
    ),"""
    else:
        cosine = f"""dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max({max_iters}, warmup_iters + 1),
    ),"""
    return f"""[
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=False,
        begin=0,
        end=warmup_iters,
    ),
    {cosine}
]"""


def _num(src: ConfigSource, name: str, default: float) -> float:
    value = src.get(name) if src.has(name) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def set_schedule(src: ConfigSource, total_iters: int | None) -> None:
    """Write the iteration warm-up for a run of ``total_iters`` (None: keep the config's
    ``warmup_iters``, or the minimum) and the schedule that uses it."""
    if not src.has("param_scheduler"):
        return  # a config with its own kind of schedule: left as it is
    acc = int(_num(src, "accumulative_counts", 1))
    if total_iters is not None:
        warm = warmup_iters(total_iters, acc, _num(src, "warmup_ratio", 0.03))
    elif src.has("warmup_iters") and isinstance(src.get("warmup_iters"), int):
        warm = src.get("warmup_iters")
    else:
        warm = max(2, WARMUP_MIN_STEPS * acc)
    if src.has("warmup_iters"):
        src.set("warmup_iters", warm)
    else:
        anchor = "warmup_ratio" if src.has("warmup_ratio") else "lr"
        src.set("warmup_iters", warm, after=anchor)
        src.insert_line_before("warmup_iters", WARMUP_NOTE)
    src.set("param_scheduler", Code(iteration_schedule(_get_max_iters(src))))


def _set_schedule(src: ConfigSource, max_iters: int | None) -> None:
    if not src.has("param_scheduler"):
        return
    set_schedule(src, max_iters)


def _set_max_iters(src: ConfigSource, value: int | None) -> None:
    path = ("train_cfg",)
    if value is None:
        if src.get_kw(path, "max_iters") is None:
            return
        src.remove_kw(path, "max_iters")
        src.set_kw(path, "max_epochs", Code("max_epochs"))
        _set_schedule(src, None)
        return
    if not isinstance(value, int) or value < 1:
        raise WizardError(
            f"max_iters must be a whole number >= 1, not {value!r}",
            where="--set max_iters",
            fix="use --set max_iters=2",
        )
    src.remove_kw(path, "max_epochs")
    src.set_kw(path, "max_iters", value)
    _set_schedule(src, value)


def train_dataset(src: ConfigSource) -> str | None:
    """The top-level ``process_hf_dataset`` dict the config trains on (``alpaca_en``)."""
    for name, stmt in src.assignments().items():
        value = stmt.value
        if isinstance(value, ast.Call) and any(
            kw.arg == "type" and ast.unparse(kw.value) == "process_hf_dataset"
            for kw in value.keywords
        ):
            return name
    return None


def _get_map_num_proc(src: ConfigSource) -> Any:
    name = train_dataset(src)
    return None if name is None else src.get_kw((name,), "map_num_proc")


def _set_map_num_proc(src: ConfigSource, value: int | None) -> None:
    name = train_dataset(src)
    if name is None:
        raise KeyError("process_hf_dataset dict")
    if value is None:
        src.remove_kw((name,), "map_num_proc")
    else:
        src.set_kw((name,), "map_num_proc", value)


def _get_patch(src: ConfigSource) -> bool:
    return CPU_BF16_PATCH in src.text


def _set_patch(src: ConfigSource, value: bool) -> None:
    if value:
        src.insert_after_imports(CPU_BF16_PATCH)
    else:
        src.remove_line(CPU_BF16_PATCH)


def _get_kernels(src: ConfigSource) -> bool:
    return FUSED_KERNELS_PATCH in src.text


def _set_kernels(src: ConfigSource, value: bool) -> None:
    if value:
        src.insert_after_imports(FUSED_KERNELS_PATCH)
    else:
        src.remove_line(FUSED_KERNELS_PATCH)


def _make_wizard_keys() -> dict[str, WizardKey]:
    keys: dict[str, WizardKey] = {}
    for name, path, key, default, kind, drop in (
        ("lora_r", LORA, "r", None, int, False),
        ("lora_alpha", LORA, "lora_alpha", None, (int, float), False),
        ("lora_dropout", LORA, "lora_dropout", None, (int, float), False),
        ("attn_implementation", LLM, "attn_implementation", None, str, False),
        ("use_activation_checkpointing", MODEL, "use_activation_checkpointing", True, bool, True),
        ("max_new_tokens", EVAL_HOOK, "max_new_tokens", None, int, False),
        ("logger_interval", LOGGER, "interval", None, int, False),
        ("dist_backend", DIST, "backend", None, str, False),
    ):
        get, put = _kw(path, key, default, drop_default=drop)
        keys[name] = WizardKey(get, put, kind)
    keys["quantization"] = WizardKey(_get_quant, _set_quant, str)
    keys["torch_dtype"] = WizardKey(_get_dtype, _set_dtype, str)
    keys["amp"] = WizardKey(_get_amp, _set_amp, str)
    keys["max_iters"] = WizardKey(_get_max_iters, _set_max_iters, int)
    keys["cpu_bf16_patch"] = WizardKey(_get_patch, _set_patch, bool)
    keys["fused_kernels"] = WizardKey(_get_kernels, _set_kernels, bool)
    keys["map_num_proc"] = WizardKey(_get_map_num_proc, _set_map_num_proc, int)
    return keys


WIZARD_KEYS = _make_wizard_keys()


def _settable_top_level(src: ConfigSource) -> dict[str, ast.expr]:
    """Top-level assignments that are settings (no calls inside: not model/dataset dicts)."""
    found = {}
    for name, stmt in src.assignments().items():
        if any(isinstance(n, ast.Call) for n in ast.walk(stmt.value)):
            continue
        found[name] = stmt.value
    return found


def known_keys(src: ConfigSource) -> list[str]:
    return list(_settable_top_level(src)) + list(WIZARD_KEYS)


def read_settings(src: ConfigSource) -> dict[str, Any]:
    """Every setting of a config: top-level ones in file order, then the wizard keys."""
    values: dict[str, Any] = {
        name: node_literal(node) for name, node in _settable_top_level(src).items()
    }
    for name, key in WIZARD_KEYS.items():
        try:
            values[name] = key.get(src)
        except KeyError:
            values[name] = None
    return values


def defined_names(src: ConfigSource) -> set[str]:
    """Names a config defines at top level (imports and assignments)."""
    names: set[str] = set()
    for stmt in src.tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        elif isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    return names


def parse_value(raw: str, current: Any = None, names: set[str] | None = None) -> Any:
    """A ``--set`` value: a Python literal; bare text where the setting holds text."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if isinstance(current, str):
        return raw
    try:
        expr = ast.parse(raw, mode="eval").body
    except SyntaxError:
        expr = None
    root = expr
    while isinstance(root, ast.Attribute):
        root = root.value
    if (
        isinstance(current, Code)
        and isinstance(root, ast.Name)
        and (names is None or root.id in names)
    ):
        return Code(raw)  # e.g. SYSTEM=SYSTEM_TEMPLATE.alpaca, optim_type=AdamW
    raise WizardError(
        f"{raw!r} is not a Python value",
        where="--set",
        fix="write numbers as 2e-4, text in quotes ('text'), True/False/None",
    )


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _relative(v: str) -> bool:
    """A relative path in a config is read from where training runs: not checkable here."""
    return not Path(v).expanduser().is_absolute()


def _count(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


# What each setting means, as a check: (accepts the value?, what it must be, an example).
MEANINGS: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "max_length": (_count(1), "a whole number of tokens, 1 or more", "2048"),
    "batch_size": (_count(1), "a whole number, 1 or more", "1"),
    "accumulative_counts": (_count(1), "a whole number, 1 or more", "16"),
    "dataloader_num_workers": (_count(0), "a whole number, 0 or more", "0"),
    "map_num_proc": (_count(1), "a whole number of processes, 1 or more (or None)", "4"),
    "max_epochs": (_count(1), "a whole number of epochs, 1 or more", "3"),
    "max_iters": (_count(1), "a whole number of iterations, 1 or more (or None)", "100"),
    "lr": (lambda v: _number(v) and v > 0, "a learning rate above 0", "2e-4"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "0 or more", "0"),
    "max_norm": (lambda v: _number(v) and v > 0, "above 0", "1"),
    "warmup_ratio": (lambda v: _number(v) and 0 <= v < 1, "a fraction, 0 <= x < 1", "0.03"),
    "betas": (
        lambda v: (
            isinstance(v, tuple) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v)
        ),
        "two numbers in [0, 1)",
        "(0.9, 0.999)",
    ),
    "save_steps": (_count(1), "a whole number of iterations, 1 or more", "500"),
    "save_total_limit": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and (v == -1 or v >= 1),
        "-1 (keep all) or 1 or more",
        "2",
    ),
    "evaluation_freq": (_count(1), "a whole number of iterations, 1 or more", "500"),
    "lora_r": (_count(1), "a rank, 1 or more", "64"),
    "lora_alpha": (lambda v: _number(v) and v > 0, "above 0", "16"),
    "lora_dropout": (lambda v: _number(v) and 0 <= v < 1, "a fraction, 0 <= x < 1", "0.1"),
    "max_new_tokens": (_count(1), "a whole number of tokens, 1 or more", "64"),
    "logger_interval": (_count(1), "a whole number of iterations, 1 or more", "10"),
    "torch_dtype": (lambda v: v in DTYPES, f"one of {', '.join(DTYPES)}", "'bfloat16'"),
    "attn_implementation": (
        lambda v: v in ("eager", "sdpa", "flash_attention_2"),
        "eager, sdpa or flash_attention_2",
        "'sdpa'",
    ),
    "dist_backend": (lambda v: v in ("nccl", "gloo"), "nccl (GPUs) or gloo (CPU)", "'nccl'"),
    "alpaca_en_path": (
        lambda v: isinstance(v, str) and (_relative(v) or Path(v).expanduser().is_file()),
        "an existing dataset file",
        "'datas/assistant.json'",
    ),
    "data_path": (
        lambda v: isinstance(v, str) and (_relative(v) or Path(v).expanduser().is_file()),
        "an existing dataset file",
        "'datas/assistant.json'",
    ),
    "pretrained_model_name_or_path": (
        lambda v: (
            isinstance(v, str)
            and (_relative(v) or (Path(v).expanduser() / "config.json").is_file())
        ),
        "a model folder holding config.json",
        "'/path/to/internlm2-chat-1_8b'",
    ),
}


def check_meaning(key: str, value: Any) -> None:
    """Refuse a value of the right type but the wrong meaning (max_length=-5, lr=-1, ...)."""
    meaning = MEANINGS.get(key)
    if meaning is None or value is None or isinstance(value, Code):
        return
    ok, what, example = meaning
    if not ok(value):
        raise WizardError(
            f"{key}={value!r} does not work: {key} must be {what}",
            where=f"--set {key}",
            fix=f"e.g. --set {key}={example}",
        )


def apply_setting(src: ConfigSource, key: str, value: Any) -> None:
    """Set one setting; an unknown key names the close ones; values checked against their
    meaning (:data:`MEANINGS`)."""
    if key in WIZARD_KEYS:
        wk = WIZARD_KEYS[key]
        if (
            value is not None
            and wk.kind is not None
            and not isinstance(value, wk.kind)
            or (wk.kind in (int, (int, float)) and isinstance(value, bool))
        ):
            raise WizardError(
                f"{key} does not take {value!r}",
                where=f"--set {key}",
                fix=EXPLAIN.get(key, "see `xtuner-wizard config --help`"),
            )
        check_meaning(key, value)
        try:
            wk.set(src, value)
        except KeyError as exc:
            raise WizardError(
                f"this base config has no {exc.args[0] if exc.args else 'place'} to set {key} in",
                where=src.name,
                fix="pick another base config or leave the setting alone",
            ) from None
        return
    settable = _settable_top_level(src)
    if key not in settable:
        near = close_matches(key, known_keys(src))
        hint = f"did you mean {', '.join(near)}?" if near else "see the config's PART 1"
        raise WizardError(f"unknown setting {key!r}", where=f"--set {key}", fix=hint)
    current = node_literal(settable[key])
    if (
        value is not None
        and not isinstance(current, Code)
        and current is not None
        and not _compatible(current, value)
    ):
        raise WizardError(
            f"{key} holds {type(current).__name__}, not {type(value).__name__} ({value!r})",
            where=f"--set {key}",
            fix=f"e.g. --set {key}={current!r}",
        )
    check_meaning(key, value)
    src.set(key, value)


def _compatible(current: Any, value: Any) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, (int, float)) and isinstance(value, (int, float)):
        return True
    if isinstance(value, Code):
        return True
    return isinstance(value, type(current)) or isinstance(current, type(value))


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` from the command line."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise WizardError(
            f"{text!r} is not KEY=VALUE",
            where="--set",
            fix="e.g. --set max_length=1024 --set SYSTEM='You are helpful.'",
        )
    return key, raw.strip()
