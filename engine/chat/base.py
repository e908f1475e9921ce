"""The chat engine interface: ``stream_chat`` yields text pieces; ``load_engine`` picks one.

Engines are chosen by name and imported lazily (torch/transformers only when a model loads):

- ``auto`` (the default): ``fast`` on CUDA for the architectures it supports, else ``hf``.
- ``hf``: transformers ``generate`` (portable: CPU or GPU, any causal LM).
- ``fast``: a decode loop over the model's own weights with a static KV cache, captured in
  CUDA graphs on a GPU (plain PyTorch on a CPU). InternLM2 and Llama-style models.
  ``fast-compile``: the same with each layer fused by torch.compile first (GPU; ~10 s more to load).
- ``lmdeploy``: LMDeploy's TurboMind, when it is installed.

Every engine formats the conversation with the run's XTuner prompt template
(:mod:`engine.chat.templates`) and stops on eos and the template's stop words.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import WizardError

ENGINES = {
    "auto": ("", ""),  # resolved by resolve_engine: fast on CUDA where it can, else hf
    "hf": ("engine.chat.hf", "HFEngine"),
    "fast": ("engine.chat.fast", "FastEngine"),
    "fast-compile": ("engine.chat.fast", "CompiledFastEngine"),
    "lmdeploy": ("engine.chat.lmdeploy", "LMDeployEngine"),
}

DEFAULT_MAX_NEW_TOKENS = 256


@dataclass
class GenerationStats:
    """What the last generation cost: filled by the engines, read by benchmarks and the UI."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    time_to_first_token: float | None = None  # seconds
    decode_seconds: float = 0.0  # from the first to the last new token
    stopped: bool = False  # stop_event was set
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decode_tokens_per_s(self) -> float | None:
        if self.new_tokens < 2 or self.decode_seconds <= 0:
            return None
        return (self.new_tokens - 1) / self.decode_seconds


class ChatEngine:
    """A loaded model that answers a conversation, streamed."""

    name = "base"

    def __init__(self) -> None:
        self.tokenizer: Any = None
        self.template = None  # engine.chat.templates.ChatTemplate
        self.stats = GenerationStats()
        self.model_path: Path | None = None

    # -- the interface ----------------------------------------------------------------
    def stream_chat(
        self,
        messages: list[dict],
        *,
        system: str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop_event: threading.Event | None = None,
    ) -> Iterator[str]:
        """Answer the last user message of ``messages`` ([{"role", "content"}, ...]).

        Yields pieces of text as they are decoded. ``temperature`` 0 is greedy (deterministic).
        Setting ``stop_event`` ends the generation after the current token.
        """
        ids = self.template.encode(self.tokenizer, messages, system=system)
        decoder = IncrementalDecoder(self.tokenizer)
        for token in self.generate_tokens(
            ids,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_event=stop_event,
        ):
            piece = decoder.push(token)
            if piece:
                yield piece
        tail = decoder.flush()
        if tail:
            yield tail

    def chat(self, messages: list[dict], **kwargs: Any) -> str:
        """The whole answer at once."""
        return "".join(self.stream_chat(messages, **kwargs))

    def generate_tokens(
        self,
        prompt_ids: list[int],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop_event: threading.Event | None = None,
        ignore_eos: bool = False,
    ) -> Iterator[int]:
        """Yield new token ids (stop tokens are not yielded). ``ignore_eos`` is for benchmarks."""
        raise NotImplementedError

    def stop_token_ids(self) -> set[int]:
        return self.template.stop_token_ids(self.tokenizer) if self.template else set()

    def close(self) -> None:
        """Free the model (GPU memory)."""


class IncrementalDecoder:
    """Turn a stream of token ids into text pieces (holds back half a UTF-8 character)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.start = 0
        self.printed = 0

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        text = self.tokenizer.decode(self.ids[self.start :], skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        piece = text[self.printed :]
        if text.endswith("\n"):
            self.start = len(self.ids)
            self.printed = 0
        else:
            self.printed = len(text)
        return piece

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids[self.start :], skip_special_tokens=True)
        piece = text[self.printed :].rstrip("\ufffd")
        self.start, self.printed = len(self.ids), 0
        return piece


def engine_names() -> list[str]:
    return list(ENGINES)


# What the fast engine's decode step is written for (engine/chat/fast.py): InternLM2's packed
# wqkv, the Llama-style q/k/v layouts, SiLU gated MLPs, default/linear/dynamic rope.
FAST_MODEL_TYPES = ("internlm2", "internlm3", "llama", "qwen2", "mistral")


def fast_supports(model_path: Path) -> bool:
    """Whether the fast engine knows this model's architecture (read from config.json)."""
    import json

    try:
        cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    scaling = cfg.get("rope_scaling") or {}
    kind = scaling.get("type") or scaling.get("rope_type") or "default"
    return (
        cfg.get("model_type") in FAST_MODEL_TYPES
        and cfg.get("hidden_act", "silu") in ("silu", "swish")
        and kind in ("default", "linear", "dynamic")
    )


def resolve_engine(name: str, model_path: Path, device: str | None = None) -> str:
    """``auto``: ``fast`` on CUDA for the architectures it supports, ``hf`` otherwise."""
    if name != "auto":
        return name
    dev = str(device).strip().lower() if device else pick_device(None)  # named: checked on load
    return "fast" if dev.startswith("cuda") and fast_supports(model_path) else "hf"


def load_engine(
    name: str = "auto",
    model_path: str | Path | None = None,
    *,
    adapter: str | Path | None = None,
    template: Any = None,
    device: str | None = None,
    workspace: Any = None,
    **kwargs: Any,
) -> ChatEngine:
    """Load ``model_path`` (a Hugging Face folder) into the engine called ``name``.

    ``template`` is a ChatTemplate, a template name (``internlm2_chat``), a config path to
    read it from, or None (read it from the model's neighbourhood, else internlm2_chat).
    ``workspace``: where the user's confirmations of a folder's Python are recorded; a
    folder whose code is not trusted (``engine.trust``) is refused with one line, unloaded.
    """
    if name not in ENGINES:
        raise WizardError(
            f"unknown chat engine {name!r}",
            where="--engine",
            fix=f"use one of: {', '.join(ENGINES)}",
        )
    if model_path is None:
        raise WizardError("no model to chat with", fix="give a model folder")
    model_path = Path(model_path).expanduser()
    check_model_dir(model_path)
    from engine.trust import require_trusted

    require_trusted(workspace, model_path)  # every engine runs the folder's code: ask first
    if adapter is not None:
        adapter = Path(adapter).expanduser()
        if not (adapter / "adapter_config.json").is_file():
            raise WizardError(
                "is not an adapter folder (no adapter_config.json)",
                where=str(adapter),
                fix="point --adapter at the hf/ folder written by the merge step's conversion",
            )
    from engine.chat.templates import resolve_template

    tmpl = resolve_template(template, model_path=model_path)
    name = resolve_engine(name, model_path, device)
    module_name, class_name = ENGINES[name]
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    # (checked again where transformers loads it)
    return cls(
        model_path, adapter=adapter, template=tmpl, device=device, workspace=workspace, **kwargs
    )


def check_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise WizardError(
            "model folder not found",
            where=str(path),
            fix="run the merge step first, or give a model folder",
        )
    if not (path / "config.json").is_file():
        raise WizardError(
            "is not a Hugging Face model folder (no config.json)",
            where=str(path),
            fix="give the folder that holds config.json and the weights",
        )


def pick_device(device: str | None) -> str:
    """``device`` checked (cpu, cuda, cuda:N that exists here), or cuda when available."""
    if device:
        name = str(device).strip().lower()
        if name == "cpu":
            return name
        if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
            raise WizardError(
                f"unknown device {device!r}", where="--device", fix="use cpu or cuda (or cuda:N)"
            )
        import torch

        if not torch.cuda.is_available():
            raise WizardError(
                "CUDA is not available here (no GPU, or torch without CUDA)",
                where=f"--device {device}",
                fix="use --device cpu, or leave --device out",
            )
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise WizardError(
                f"there is no GPU {name[5:]} (this machine has {torch.cuda.device_count()})",
                where=f"--device {device}",
                fix="use --device cuda:0, or leave --device out",
            )
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
