"""Profiles: the settings a config gets for the hardware it will train on.

- ``tutorial``: the built-in's settings as the tutorial keeps them (QLoRA nf4, fp16 AMP,
  batch 1, accumulate 16, max_length 2048, lr 2e-4, 3 epochs).
- ``cpu``: what a CPU needs (notes/xtuner-on-cpu.md): the bf16 patch, no quantization,
  float32, a plain OptimWrapper, gloo, short evaluation answers, a log line per iteration,
  short samples.
- ``qlora`` / ``lora``: GPU settings chosen by :func:`engine.config.estimate.pick_settings`
  (batch, attention, activation checkpointing; accumulation keeps the effective batch ~16).
- ``auto``: ``cpu`` with no GPU, else whichever of qlora/lora the estimate finds fastest.

A tiny model (the demo) also gets the demo sizing: lr 2e-3, checkpoints every 32 and
evaluation every 16 iterations, no system prompt, max_length 256 (except under ``tutorial``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from engine.config.estimate import ModelSize, Pick, pick_settings

PROFILES = ("auto", "tutorial", "qlora", "lora", "cpu")

PROFILE_HELP = {
    "auto": "pick by the hardware found (cpu with no GPU)",
    "tutorial": "the tutorial's settings: QLoRA nf4, fp16, batch 1 x accumulate 16, 2048 tokens",
    "qlora": "4-bit base + LoRA, batch/attention/checkpointing sized to the GPU",
    "lora": "bf16 base + LoRA, sdpa attention, larger batch, checkpointing off where it fits",
    "cpu": "what a CPU needs: float32, no quantization, no AMP, gloo, short samples",
}

DEMO_SIZING: dict[str, Any] = {
    "lr": 2e-3,
    "save_steps": 32,
    "evaluation_freq": 16,
    "SYSTEM": "",
    "max_length": 256,
    "accumulative_counts": 1,
    "max_new_tokens": 48,
    "logger_interval": 1,
}

CPU_SETTINGS: dict[str, Any] = {
    "cpu_bf16_patch": True,
    "quantization": None,
    "torch_dtype": "float32",
    "amp": None,
    "dist_backend": "gloo",
    "max_new_tokens": 48,
    "logger_interval": 1,
    "max_length": 256,
    "batch_size": 1,
    "accumulative_counts": 1,
}


@dataclass
class Gpu:
    name: str
    total_gib: float


@dataclass
class Hardware:
    gpus: list[Gpu] = field(default_factory=list)
    source: str = "none"

    def describe(self) -> str:
        if not self.gpus:
            return "no GPU found"
        first = self.gpus[0]
        more = f"{len(self.gpus)} x " if len(self.gpus) > 1 else ""
        return f"{more}{first.name} ({first.total_gib:.0f} GiB)"

    def pairs(self) -> list[tuple[str, float]]:
        return [(g.name, g.total_gib) for g in self.gpus]


def _visible(gpus: list[Gpu]) -> list[Gpu]:
    """Only the GPUs CUDA_VISIBLE_DEVICES lets training see (by index)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    keep = [int(v) for v in visible.split(",") if v.strip().isdigit()]
    return [g for i, g in enumerate(gpus) if i in keep]


def _from_gpu_module() -> Hardware | None:
    """engine.gpu's NVML sampler (None when NVML finds nothing: try nvidia-smi next)."""
    try:
        from engine.gpu import GpuSampler
    except ImportError:
        return None
    sampler = GpuSampler()
    try:
        samples = sampler.sample()
    finally:
        sampler.close()
    gpus = [Gpu(g.name, g.mem_total_mb / 1024) for g in samples if g.mem_total_mb]
    return Hardware(_visible(gpus), "nvml") if gpus else None


def _from_nvidia_smi() -> Hardware | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.splitlines():
        name, _, mib = line.rpartition(",")
        try:
            gpus.append(Gpu(name.strip(), float(mib) / 1024))
        except ValueError:
            continue
    return Hardware(_visible(gpus), "nvidia-smi")


GPUS_ENV = "XTUNER_WIZARD_GPUS"  # "none", or "NAME:GiB,NAME:GiB": size configs for other GPUs


def _from_env() -> Hardware | None:
    spec = os.environ.get(GPUS_ENV)
    if spec is None:
        return None
    gpus = []
    for item in spec.split(","):
        name, _, gib = item.strip().rpartition(":")
        try:
            gpus.append(Gpu(name or "GPU", float(gib)))
        except ValueError:
            continue  # "none" or junk: no GPU
    return Hardware(gpus, GPUS_ENV)


def detect_hardware() -> Hardware:
    """The GPUs here (NVML / nvidia-smi; no torch import). Empty on a machine with none.

    ``XTUNER_WIZARD_GPUS`` overrides what is found ("none", or "NVIDIA H200:141,...").
    """
    for probe in (_from_env, _from_gpu_module, _from_nvidia_smi):
        hw = probe()
        if hw is not None:
            return hw
    return Hardware([], "none")


def resolve_profile(
    profile: str,
    hardware: Hardware,
    size: ModelSize,
    *,
    max_length: int = 2048,
    lora_r: int = 64,
    max_batch: int = 16,
) -> tuple[str, Pick | None]:
    """The concrete profile (``auto`` resolved) and, for GPUs, the estimate's pick."""
    if profile not in PROFILES:
        raise ValueError(profile)
    if profile == "cpu" or (profile == "auto" and not hardware.gpus):
        return "cpu", None
    if profile == "tutorial":
        return "tutorial", None
    if not hardware.gpus:
        # qlora/lora asked for on a machine without GPUs: size for a typical 24 GiB card
        hardware = Hardware([Gpu("GPU", 24.0)], "assumed")
    quant: Any = {"qlora": "nf4", "lora": None, "auto": True}[profile]
    pick = pick_settings(
        hardware.pairs(),
        size,
        quantization=quant,
        max_length=max_length,
        lora_r=lora_r,
        max_batch=max_batch,
    )
    assert pick is not None
    if profile == "auto":
        profile = "qlora" if pick.plan.quantization else "lora"
    return profile, pick


def profile_settings(
    profile: str, *, size: ModelSize, pick: Pick | None, demo: bool
) -> tuple[dict[str, Any], list[str]]:
    """Settings (key -> value) for a resolved profile, and notes saying why."""
    notes: list[str] = []
    settings: dict[str, Any] = {}
    if profile == "tutorial":
        notes.append("tutorial: the built-in's settings, as the tutorial keeps them")
        return settings, notes
    if profile == "cpu":
        settings.update(CPU_SETTINGS)
        notes.append("cpu: float32, no quantization or AMP, gloo, short samples")
    else:
        assert pick is not None
        plan = pick.plan
        if profile == "qlora":
            settings.update(
                quantization=plan.quantization or "nf4", torch_dtype="float16", amp="float16"
            )
        else:
            settings.update(quantization=None, torch_dtype="bfloat16", amp="bfloat16")
        settings.update(
            batch_size=plan.batch_size,
            accumulative_counts=pick.accumulative_counts,
            use_activation_checkpointing=plan.checkpointing,
            attn_implementation="sdpa" if plan.attention == "sdpa" else None,
        )
        notes.append(f"{profile}: {pick.reason}")
    if demo:
        settings.update(DEMO_SIZING)
        notes.append("demo model: lr 2e-3, save every 32, evaluate every 16, 256 tokens")
    return settings, notes
