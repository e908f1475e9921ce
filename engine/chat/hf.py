"""The transformers engine: ``model.generate`` in a thread, tokens streamed through a queue.

The portable default: CPU or GPU, any causal LM transformers can load (remote code, as the
tutorial's InternLM2 needs, once it is trusted: ``engine.trust``), a LoRA adapter applied with
peft when given.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.chat.base import DEFAULT_MAX_NEW_TOKENS, ChatEngine, GenerationStats, pick_device
from engine.errors import WizardError

_DONE = object()
_IMPORT_LOCK = threading.Lock()


def _auto_classes():
    """transformers' Auto classes. Its lazy module can fail a ``from ... import`` made while
    another thread (another pane's worker) is still importing it: serialise and retry."""
    import importlib

    with _IMPORT_LOCK:
        for attempt in range(5):
            try:
                auto = importlib.import_module("transformers.models.auto")
                return auto.AutoModelForCausalLM, auto.AutoTokenizer
            except ImportError:
                if attempt == 4:
                    raise
                time.sleep(0.5)
    raise RuntimeError("unreachable")


def load_hf_model(
    model_path: Path,
    *,
    adapter: Path | None = None,
    device: str = "cpu",
    dtype=None,
    workspace=None,
):
    """(model, tokenizer) loaded offline, in eval mode, on ``device``.

    The Python a model folder brings runs only when it is trusted (``engine.trust``: confirmed
    in ``workspace`` by its hash, or the wizard's own demo code); otherwise one line, naming
    the files, and nothing is loaded."""
    from engine.trust import require_trusted

    remote = require_trusted(workspace, model_path) is not None
    import torch

    AutoModelForCausalLM, AutoTokenizer = _auto_classes()
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=remote)
        model = AutoModelForCausalLM.from_pretrained(
            str(model_path), trust_remote_code=remote, torch_dtype=dtype
        )
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WizardError(
            f"transformers cannot load the model: {first}",
            where=str(model_path),
            fix="check the folder holds a complete model (config, weights, tokenizer)",
        ) from exc
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(device)
    model.eval()
    return model, tokenizer


class _TokenQueue:
    """A transformers streamer: the first put() is the prompt, later ones new tokens."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for tok in value.reshape(-1).tolist():
            self.q.put(int(tok))

    def end(self) -> None:
        self.q.put(_DONE)


class HFEngine(ChatEngine):
    name = "hf"

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        adapter: Path | None = None,
        template=None,
        device: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
        dtype=None,
        workspace=None,
    ) -> None:
        super().__init__()
        self.device = pick_device(device)
        self.model_path = model_path
        if model is None:
            model, tokenizer = load_hf_model(
                model_path, adapter=adapter, device=self.device, dtype=dtype, workspace=workspace
            )
        self.model = model
        self.tokenizer = tokenizer
        self.template = template

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
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        stop_ids = set() if ignore_eos else self.stop_token_ids()
        streamer = _TokenQueue()
        errors: list[BaseException] = []
        closed = threading.Event()  # the consumer went away: end the generation too

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return closed.is_set() or bool(stop_event is not None and stop_event.is_set())

        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.model.device)
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Stop()]),
            use_cache=True,
        )
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        if ignore_eos:
            kwargs.update(eos_token_id=None, min_new_tokens=max_new_tokens)
        else:
            kwargs["eos_token_id"] = sorted(stop_ids) or None
        kwargs["pad_token_id"] = pad if pad is not None else (min(stop_ids) if stop_ids else 0)
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)

        def _run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # re-raised in the consumer
                errors.append(exc)
            finally:
                streamer.end()

        stats = self.stats = GenerationStats(prompt_tokens=len(prompt_ids))
        t0 = time.perf_counter()
        first = None
        thread = threading.Thread(target=_run, name="hf-generate", daemon=True)
        thread.start()
        try:
            while True:
                tok = streamer.q.get()
                if tok is _DONE:
                    break
                if stop_event is not None and stop_event.is_set():
                    break  # stopped: tokens the generation thread made meanwhile are not shown
                now = time.perf_counter()
                if first is None:
                    first = now
                    stats.time_to_first_token = now - t0
                stats.decode_seconds = now - first
                if tok in stop_ids:
                    continue  # generate stops on it; it is not text
                stats.new_tokens += 1
                yield tok
        finally:
            if stop_event is not None and stop_event.is_set():
                stats.stopped = True
            closed.set()
            thread.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        self.model = None
