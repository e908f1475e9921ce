"""LMDeploy's TurboMind engine (the InternLM project's own inference engine), when installed.

Imported only when asked for (``--engine lmdeploy``). LMDeploy needs a CUDA GPU and its wheel
(hundreds of MB); without it the message says so and names the engines that work here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from engine.chat.base import DEFAULT_MAX_NEW_TOKENS, ChatEngine, GenerationStats
from engine.errors import WizardError


def _import_lmdeploy():
    try:
        import lmdeploy  # noqa: F401
        from lmdeploy import GenerationConfig, TurbomindEngineConfig, pipeline
    except ImportError as exc:
        raise WizardError(
            "the lmdeploy engine is not installed",
            where="--engine lmdeploy",
            fix="`pip install lmdeploy` on a CUDA machine, or use --engine fast (GPU) or hf",
        ) from exc
    return pipeline, TurbomindEngineConfig, GenerationConfig


class LMDeployEngine(ChatEngine):
    name = "lmdeploy"

    def __init__(self, model_path: Path, *, adapter=None, template=None, device=None, **_):
        super().__init__()
        pipeline, TurbomindEngineConfig, GenerationConfig = _import_lmdeploy()
        if adapter is not None:
            raise WizardError(
                "lmdeploy's TurboMind takes merged models only",
                where="--adapter",
                fix="merge first (`xtuner-wizard merge`) and chat with merged/",
            )
        self.model_path = Path(model_path)
        self.template = template
        self._gen_cls = GenerationConfig
        self.pipe = pipeline(
            str(model_path), backend_config=TurbomindEngineConfig(session_len=4096)
        )
        self.tokenizer = getattr(getattr(self.pipe, "tokenizer", None), "model", None)

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
        prompt = self.template.render(messages, system=system)
        gen = self._gen_cls(
            max_new_tokens=max_new_tokens,
            do_sample=bool(temperature and temperature > 0),
            temperature=temperature or 1.0,
            top_p=top_p,
            stop_words=list(self.template.stop_words),
        )
        self.stats = GenerationStats()
        for out in self.pipe.stream_infer([prompt], gen_config=gen, do_preprocess=False):
            if stop_event is not None and stop_event.is_set():
                self.stats.stopped = True
                break
            if out.text:
                self.stats.new_tokens += 1
                yield out.text

    def generate_tokens(self, prompt_ids, **kwargs):
        raise WizardError("token-level generation is not offered by the lmdeploy engine")

    def close(self) -> None:
        self.pipe = None
