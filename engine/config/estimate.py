"""Memory, speed and length of a LoRA/QLoRA run, as functions of sizes (no GPU needed).

Calibrated against one H200 (random 1.89B InternLM2, packed 2048, LoRA r=64; the table in
``docs/notes/xtuner-on-h200.md``, peaks from mmengine's ``memory:`` field):

- QLoRA weights: 4-bit linears (0.5 B/param) + embeddings/lm_head upcast to fp32 by peft's
  ``prepare_model_for_kbit_training``; bf16 "LoRA" is upcast to fp32 by the same call, so its
  base costs 4 B/param.
- LoRA parameters: fp32 weights + grads + two Adam moments (16 B/param).
- Per token: the logits path (vocab x ~12 B: bf16 logits, fp32 copy, softmax, grad), plus
  with activation checkpointing each layer's fp32 input (4h B), without it each layer's
  activations (~32h + 8i B) and, for eager attention, the score matrices (heads x seq x 7 B).
- Speed: FLOPs per token 6N with checkpointing, 4N without, plus attention, at an efficiency
  fitted to the table (0.32 of peak at batch 8 with sdpa; eager 0.62x; 4-bit 0.78x; batch 1
  is 0.72x (eager) / 0.42x (sdpa) of batch 8).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import WizardError

GIB = 1024**3
PACK_SHARDS = 32  # xtuner's process_hf_dataset prepares (and packs) with map_num_proc=32
TUTORIAL_EFFECTIVE_BATCH = 16  # batch 1 x accumulative_counts 16
HEADROOM = 0.92  # use at most this share of a GPU's memory
OVERHEAD_GIB = 0.4  # allocator blocks, CUDA workspaces


@dataclass(frozen=True)
class ModelSize:
    params: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool = False
    model_type: str = ""

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def head_dim(self) -> int:
        return self.hidden // max(self.heads, 1)

    def lora_params(self, r: int) -> int:
        h, i, kvd = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        attn = r * (h + h + 2 * kvd) + r * (h + h)  # fused/split qkv in, o out: same count
        if self.model_type != "internlm2":
            attn = r * (h + h) + 2 * r * (h + kvd) + r * (h + h)
        mlp = 3 * r * (h + i)
        return self.layers * (attn + mlp)

    @property
    def is_tiny(self) -> bool:
        """Small enough to be the demo model (trains on a CPU in seconds)."""
        return self.params < 100_000_000


def size_from_hf_config(cfg: dict[str, Any]) -> ModelSize:
    h = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    inter = int(cfg.get("intermediate_size") or 4 * h)
    vocab = int(cfg["vocab_size"])
    heads = int(cfg.get("num_attention_heads") or max(h // 128, 1))
    kv = int(cfg.get("num_key_value_heads") or heads)
    tied = bool(cfg.get("tie_word_embeddings", False))
    kvd = kv * (h // heads)
    per_layer = h * (h + 2 * kvd) + h * h + 3 * h * inter + 2 * h
    params = layers * per_layer + vocab * h * (1 if tied else 2) + h
    return ModelSize(
        params, h, layers, inter, vocab, heads, kv, tied, str(cfg.get("model_type", ""))
    )


def model_size(model_dir: str | Path) -> ModelSize:
    """The size of a model folder, from its config.json (no weights are read)."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise WizardError(
            "model folder not found",
            where=str(path),
            fix="pass the folder holding config.json and the weights (--model PATH), or --model demo",
        )
    cfg_path = path / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        return size_from_hf_config(cfg)
    except FileNotFoundError:
        raise WizardError(
            "not a model folder: no config.json",
            where=str(path),
            fix="pass the folder holding config.json and the weights (e.g. internlm2-chat-1_8b)",
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise WizardError(
            f"config.json is not a transformers model config ({exc})",
            where=str(cfg_path),
            fix="pass a Hugging Face model folder",
        ) from None


# internlm2-chat-1_8b's dimensions (1.89B parameters)
INTERNLM2_CHAT_1_8B = size_from_hf_config(
    {
        "model_type": "internlm2",
        "hidden_size": 2048,
        "num_hidden_layers": 24,
        "intermediate_size": 8192,
        "vocab_size": 92544,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
    }
)


@dataclass(frozen=True)
class Plan:
    """The memory-relevant settings of a run."""

    quantization: str | None = "nf4"  # nf4/fp4/int8 or None
    dtype: str = "float16"
    lora_r: int | None = 64  # None: full fine-tuning
    batch_size: int = 1
    max_length: int = 2048
    checkpointing: bool = True
    attention: str = "eager"  # eager | sdpa

    def describe(self) -> str:
        kind = (
            "full fine-tune"
            if self.lora_r is None
            else (f"QLoRA {self.quantization}" if self.quantization else f"LoRA {self.dtype}")
        )
        ckpt = "checkpointing on" if self.checkpointing else "checkpointing off"
        return f"{kind}, batch {self.batch_size} x {self.max_length}, {self.attention}, {ckpt}"


@dataclass
class MemoryEstimate:
    weights: float
    trainable: float
    activations: float
    total: float
    parts: dict[str, float] = field(default_factory=dict)

    def fits(self, gpu_gib: float) -> bool:
        return self.total <= gpu_gib * HEADROOM


def peak_memory(size: ModelSize, plan: Plan) -> MemoryEstimate:
    """Estimated peak GPU memory (GiB) of one GPU."""
    n, embed = size.params, size.embed_params
    if plan.lora_r is None:
        weights = n * 2.0  # bf16/fp16 weights; trainable below
        trainable = n * 16.0
    else:
        if plan.quantization in ("nf4", "fp4"):
            weights = (n - embed) * 0.5 * 1.03 + embed * 4.0
        elif plan.quantization == "int8":
            weights = (n - embed) * 1.0 + embed * 4.0
        else:
            weights = n * 4.0  # peft upcasts a non-quantized base to fp32
        trainable = size.lora_params(plan.lora_r) * 16.0
    s = plan.max_length
    logits = size.vocab * 12.0
    if plan.checkpointing:
        per_token = size.layers * size.hidden * 4.0 + logits
    else:
        per_token = size.layers * (32.0 * size.hidden + 8.0 * size.intermediate) + logits
        if plan.attention == "eager":
            per_token += size.layers * size.heads * s * 7.0
    activations = plan.batch_size * s * per_token * 1.03
    total = (weights + trainable + activations) / GIB + OVERHEAD_GIB
    return MemoryEstimate(
        weights=weights / GIB,
        trainable=trainable / GIB,
        activations=activations / GIB,
        total=total,
        parts={"logits": plan.batch_size * s * logits / GIB},
    )


# Dense bf16/fp16 throughput reachable by matmuls (TFLOP/s), by GPU name.
GPU_TFLOPS = (
    ("H200", 790.0),
    ("H100", 750.0),
    ("H800", 750.0),
    ("H20", 148.0),
    ("B200", 1500.0),
    ("A100", 280.0),
    ("A800", 280.0),
    ("L40S", 330.0),
    ("L40", 180.0),
    ("A6000", 150.0),
    ("A10", 125.0),
    ("L4", 120.0),
    ("4090", 165.0),
    ("4080", 97.0),
    ("4070", 58.0),
    ("4060", 30.0),
    ("3090", 71.0),
    ("3080", 60.0),
    ("3070", 40.0),
    ("3060", 25.0),
    ("V100", 112.0),
    ("T4", 65.0),
)
MIN_ITER_SECONDS = 0.05
CPU_FLOPS = 3e10  # what a couple of CPU cores reach on the demo model


def gpu_tflops(name: str, total_gib: float = 0.0) -> float:
    upper = name.upper()
    for key, tflops in GPU_TFLOPS:
        if key in upper:
            return tflops
    return max(30.0, min(300.0, total_gib * 3.0))


def flops_per_token(size: ModelSize, plan: Plan) -> float:
    dense = (6.0 if plan.checkpointing else 4.0) * size.params
    attention = 6.0 * size.layers * plan.max_length * size.hidden
    return dense + attention


def efficiency(plan: Plan) -> float:
    eff = 0.32
    if plan.attention != "sdpa":
        eff *= 0.62
    if plan.quantization:
        eff *= 0.78
    low = 0.72 if plan.attention != "sdpa" else 0.42
    b = max(1, plan.batch_size)
    eff *= min(1.0, low + (1.0 - low) * (b - 1) / 7.0)
    return eff


def tokens_per_second(
    size: ModelSize, plan: Plan, gpu_name: str | None, total_gib: float = 0.0
) -> float:
    """Training tokens per second of one GPU (``gpu_name`` None: the CPU)."""
    if gpu_name is None:
        rate = CPU_FLOPS / flops_per_token(size, plan)
    else:
        rate = (
            gpu_tflops(gpu_name, total_gib) * 1e12 * efficiency(plan) / flops_per_token(size, plan)
        )
    # small models are bound by per-iteration overhead (launches, the optimizer, logging)
    return min(rate, plan.batch_size * plan.max_length / MIN_ITER_SECONDS)


# -- the dataset: iterations and time --------------------------------------------------------
TEMPLATE_TOKENS = 12  # internlm2_chat's markers around one turn (bos, im_start/end, roles)


def approx_tokens(text: str) -> int:
    """A tokenizer-free count: ~0.7 token per CJK character (InternLM2 merges common words),
    ~4 characters a token for other text."""
    cjk = sum(1 for ch in text if ord(ch) >= 0x2E80)
    return math.ceil(0.7 * cjk) + math.ceil((len(text) - cjk) / 4)


@dataclass
class DatasetSize:
    records: int
    tokens: int
    exact: bool  # counted with the model's tokenizer
    longest: int = 0  # the longest record's tokens (markers included)


def dataset_size(path: str | Path, tokenizer_dir: str | Path | None = None) -> DatasetSize:
    """Records and tokens (with the chat template's markers) of a conversation dataset."""
    from engine.data.validate import iter_records  # streams: memory of one record

    path = Path(path)
    counter = token_counter(tokenizer_dir) if tokenizer_dir is not None else None
    known: dict[str, int] = {}  # text -> tokens: datasets repeat a few texts thousands of times
    tokens = records = longest = 0
    try:
        for record in iter_records(path):
            records += 1
            own = 0
            for turn in record.get("conversation", []) if isinstance(record, dict) else []:
                if not isinstance(turn, dict):
                    continue
                own += TEMPLATE_TOKENS
                for key in ("system", "input", "output"):
                    text = turn.get(key)
                    if not isinstance(text, str):
                        continue
                    if text not in known:
                        if len(known) > 100_000:
                            known.clear()  # bounded: a dataset of distinct texts
                        known[text] = counter([text])[0] if counter else approx_tokens(text)
                    own += known[text]
            tokens += own
            longest = max(longest, own)
    except OSError as exc:
        raise WizardError(
            f"cannot read the dataset ({exc.strerror or type(exc).__name__})",
            where=str(path),
            fix=f"check it with: xtuner-wizard data validate {path}",
        ) from exc
    return DatasetSize(records=records, tokens=tokens, exact=counter is not None, longest=longest)


def token_counter(tokenizer_dir: str | Path) -> Callable[[list[str]], list[int]] | None:
    """Token counts with the model's own tokenizer files, read by the ``tokenizers`` or
    ``sentencepiece`` library (lazy imports, milliseconds; no transformers, no model code
    run). None when the folder has neither tokenizer.json nor tokenizer.model."""
    folder = Path(tokenizer_dir)
    if (folder / "tokenizer.json").is_file():
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            return lambda texts: [
                len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)
            ]
        except Exception:  # noqa: BLE001 - an unreadable file falls back to the approximation
            pass
    if (folder / "tokenizer.model").is_file():
        try:
            import sentencepiece

            proc = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
            return lambda texts: [len(ids) for ids in proc.encode(texts)]
        except Exception:  # noqa: BLE001
            pass
    return None


def packed_samples(records: int, tokens: int, *, max_length: int, shards: int = PACK_SHARDS) -> int:
    """Samples of one epoch as xtuner packs a dataset (``pack_dataset``): ``datasets`` splits
    the records into ``shards`` (``map_num_proc``, at most one a record) and each is packed on
    its own by a fresh ``Packer``. A shard of fewer tokens than ``max_length`` becomes one short
    sample; a longer one is cut into whole samples of ``max_length`` and its rest is dropped
    (the Packer keeps it for a next batch that never comes): half a sample a shard on average.
    """
    if records <= 0:
        return 0
    shards = max(1, min(shards, records))
    per_shard = tokens / shards / max(1, max_length)
    if per_shard <= 1:
        return shards
    return max(shards, round(shards * (per_shard - 0.5)))


def iterations_per_epoch(
    records: int,
    tokens: int,
    *,
    max_length: int,
    batch_size: int,
    pack: bool,
    gpus: int = 1,
    shards: int = PACK_SHARDS,
) -> int:
    """Iterations of one epoch: packed samples (:func:`packed_samples`) or records."""
    if records <= 0:
        return 0
    if pack:
        samples = packed_samples(records, tokens, max_length=max_length, shards=shards)
    else:
        samples = records
    return max(1, math.ceil(samples / (batch_size * max(gpus, 1))))


# Processes for a dataset packed short (fewer tokens than 32 samples): each shard drops the rest
# of its last sample, about half a sample, so n shards cutting ~32 samples drop ~n/(64+n) of the
# tokens (the demo, measured: 1% with 2, 7% with 4, 21% with 16); xtuner's 32 packing short drop
# none. Such a dataset takes about a second to prepare: more processes only add start-ups.
SHORT_PACK_WORKERS = 4


@dataclass(frozen=True)
class DataPreparation:
    """How xtuner prepares a dataset under a config: its processes and the pack length."""

    num_proc: int  # map_num_proc
    max_length: int
    samples: int  # packed samples an epoch (estimated)


def data_preparation(
    size: DatasetSize | None,
    *,
    cores: int,
    max_length: int,
    pack: bool = True,
    length_fixed: bool = False,
) -> DataPreparation:
    """The dataset preparation sized to the machine: ``cores`` processes (at most xtuner's 32)
    making as many packed samples an epoch as xtuner's 32 make.

    xtuner packs each process's shard on its own (:func:`packed_samples`): a dataset of fewer
    tokens than 32 samples of ``max_length`` makes one short sample a shard with xtuner's 32
    (the demo: 32 of ~64 tokens) and fewer, full ones with fewer shards (2: 7 samples of 256;
    the demo then trained 21 iterations, not 96, and did not learn). There the pack length
    follows the data: ``max_length`` becomes about tokens / 32, so the fewer shards cut as
    many samples, no longer (an iteration's compute stays), never under the longest record
    (``max_length`` truncates records) with a margin for the estimate, with at most
    :data:`SHORT_PACK_WORKERS` processes. Where no such length is open (``length_fixed``: the
    user's ``max_length``; a record that long) and where the dataset is unknown, xtuner's 32
    processes stay.
    """
    workers = max(1, min(PACK_SHARDS, cores))
    if size is None or size.records <= 0:
        return DataPreparation(PACK_SHARDS, max_length, 0)
    if not pack:  # a sample a record, whatever the shards
        return DataPreparation(workers, max_length, size.records)
    ours = packed_samples(size.records, size.tokens, max_length=max_length)
    target = min(PACK_SHARDS, size.records)  # xtuner's shards
    length = max_length
    if min(workers, size.records) < target and size.tokens < target * max_length:
        if length_fixed:
            return DataPreparation(PACK_SHARDS, max_length, ours)
        # xtuner's shards make one short sample each: as many, as short, from fewer shards
        workers = min(workers, SHORT_PACK_WORKERS)
        shards = min(workers, size.records)
        # about `target` samples once each shard has dropped its rest (half a sample)
        length = math.ceil(size.tokens / (target + shards / 2))
        length = min(max_length, max(length, math.ceil(size.longest * 1.25) + 8))
    samples = packed_samples(size.records, size.tokens, max_length=length, shards=workers)
    if samples < 0.9 * ours:
        return DataPreparation(PACK_SHARDS, max_length, ours)
    return DataPreparation(workers, length, samples)


@dataclass
class RunEstimate:
    plan: Plan
    memory: MemoryEstimate | None
    iters_per_epoch: int | None
    total_iters: int | None
    tokens_per_s: float
    seconds: float | None
    gpu: str | None
    gpu_gib: float | None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return data

    def summary(self) -> str:
        parts = [self.plan.describe()]
        if self.memory is not None and self.gpu_gib:
            parts.append(f"peak ~{self.memory.total:.1f} of {self.gpu_gib:.0f} GiB")
        if self.total_iters:
            parts.append(f"{self.total_iters} iterations")
        if self.seconds:
            parts.append(f"~{format_duration(self.seconds)}")
        return ", ".join(parts)


def warmup_warning(warmup_ratio: float, epochs: float, per_epoch: int) -> str | None:
    """xtuner's warm-up lasts ``warmup_ratio x max_epochs`` epochs; mmengine converts that to
    ``int(... x iterations per epoch)``. 0 fails at start ("end should be larger than begin");
    1 never leaves LinearLR's start factor (the run trains at lr x 1e-5)."""
    warm = int(warmup_ratio * epochs * per_epoch)
    if warm >= 2:
        return None
    effect = "the run fails at start" if warm == 0 else "the run trains at lr x 1e-5"
    return (
        f"the learning-rate warm-up comes to {warm} iteration(s) (an epoch is ~{per_epoch}): "
        f"{effect}; cap the run with max_iters (the schedule then counts iterations) or add data"
    )


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def estimate_run(
    size: ModelSize,
    plan: Plan,
    *,
    gpu: tuple[str, float] | None,
    gpus: int = 1,
    dataset: DatasetSize | None = None,
    epochs: float = 3,
    pack: bool = True,
    max_iters: int | None = None,
    warmup_ratio: float | None = None,
    shards: int = PACK_SHARDS,
) -> RunEstimate:
    warnings: list[str] = []
    memory = peak_memory(size, plan) if gpu is not None else None
    if gpu is not None and memory is not None and not memory.fits(gpu[1]):
        warnings.append(
            f"will not fit: ~{memory.total:.1f} GiB needed per GPU, {gpu[1]:.0f} GiB there "
            "(lower batch_size or max_length, turn activation checkpointing on, or use QLoRA)"
        )
    tps = tokens_per_second(size, plan, gpu[0] if gpu else None, gpu[1] if gpu else 0.0)
    per_epoch = total = None
    seconds = None
    if dataset is not None:
        per_epoch = iterations_per_epoch(
            dataset.records,
            dataset.tokens,
            max_length=plan.max_length,
            batch_size=plan.batch_size,
            pack=pack,
            gpus=gpus,
            shards=shards,
        )
        total = max_iters if max_iters else math.ceil(per_epoch * epochs)
        if not max_iters and warmup_ratio:
            warning = warmup_warning(warmup_ratio, epochs, per_epoch)
            if warning:
                warnings.append(warning)
        tokens_per_iter = plan.batch_size * (
            plan.max_length if pack else max(1, dataset.tokens // max(dataset.records, 1))
        )
        seconds = total * tokens_per_iter / tps if tps > 0 else None
    return RunEstimate(
        plan,
        memory,
        per_epoch,
        total,
        tps,
        seconds,
        gpu[0] if gpu else None,
        gpu[1] if gpu else None,
        warnings,
    )


# -- choosing settings ------------------------------------------------------------------------
def accumulation_for(batch_size: int, gpus: int = 1) -> int:
    """Keep the effective batch near the tutorial's 16 packed samples per optimizer step."""
    return max(1, round(TUTORIAL_EFFECTIVE_BATCH / (batch_size * max(gpus, 1))))


@dataclass
class Pick:
    plan: Plan
    accumulative_counts: int
    memory: MemoryEstimate
    tokens_per_s: float
    fits: bool
    reason: str


def pick_settings(
    gpus: list[tuple[str, float]],
    size: ModelSize,
    *,
    max_length: int = 2048,
    lora_r: int = 64,
    quantization: str | None | bool = True,
    max_batch: int = 16,
) -> Pick | None:
    """The fastest plan that fits every GPU; None with no GPU (the CPU profile).

    ``quantization``: True tries both (bf16 LoRA first), "nf4" forces QLoRA, None forces
    bf16 LoRA. Ties go to the smaller batch.
    """
    if not gpus:
        return None
    name, gib = min(gpus, key=lambda g: g[1])
    quants: list[str | None]
    if quantization is True:
        quants = [None, "nf4"]
    elif quantization in (None, False):
        quants = [None]
    else:
        quants = [str(quantization)]
    best: Pick | None = None
    smallest: Pick | None = None
    batches = [b for b in (1, 2, 4, 8, 16, 32) if b <= max_batch]
    for quant in quants:
        dtype = "float16" if quant else "bfloat16"
        for ckpt in (False, True):
            for attention in ("sdpa", "eager"):
                for batch in batches:
                    plan = Plan(quant, dtype, lora_r, batch, max_length, ckpt, attention)
                    mem = peak_memory(size, plan)
                    tps = tokens_per_second(size, plan, name, gib)
                    cand = Pick(
                        plan, accumulation_for(batch, len(gpus)), mem, tps, mem.fits(gib), ""
                    )
                    if smallest is None or mem.total < smallest.memory.total:
                        smallest = cand
                    if cand.fits and (best is None or tps > best.tokens_per_s * 1.02):
                        best = cand
    if best is None:
        assert smallest is not None
        smallest.reason = f"nothing fits {gib:.0f} GiB: the smallest setting needs ~{smallest.memory.total:.1f} GiB"
        return smallest
    best.reason = (
        f"{best.plan.describe()}: ~{best.memory.total:.1f} of {gib:.0f} GiB, "
        f"~{best.tokens_per_s:,.0f} tokens/s per GPU on {name}"
    )
    return best


def plan_with(plan: Plan, **changes: Any) -> Plan:
    return replace(plan, **changes)
