"""Answer from a run's checkpoint at once: the base model with the LoRA weights folded in.

The first answer of a tuned model need not wait for ``pth_to_hf`` and ``merge`` (two python
start-ups, the base loaded twice, the merged model written and read back): the checkpoint
mmengine saved (``iter_N.pth``) holds the LoRA weights (xtuner's ``SupervisedFinetune``
saves only them), so the base is loaded once, each adapted linear gets
``W += (lora_alpha / r) * B @ A`` in memory (what peft's ``merge_and_unload`` and xtuner's
merge compute), and any engine answers from that model: ``fast`` on CUDA, ``hf`` elsewhere
(``auto``). Convert and merge can run after it, or on request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import WizardError

# llm.base_model.model.<module>.lora_A[.default].weight (xtuner strips the adapter name)
LORA_KEY = re.compile(
    r"^(?:llm\.)?(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$"
)


@dataclass
class RunAdapter:
    """What answering from a run's checkpoint needs."""

    base_model: Path
    checkpoint: Path
    config: Path
    run_id: str | None
    lora_r: int
    lora_alpha: float

    @property
    def scale(self) -> float:
        return float(self.lora_alpha) / float(self.lora_r)


def run_adapter(ws, run: str | None = None, checkpoint: str | Path | None = None) -> RunAdapter:
    """The base model, checkpoint, config and LoRA scaling of a finished run (the latest)."""
    from engine.config import settings_of_text
    from engine.export import resolve_source
    from engine.runs.checkpoints import is_zero_checkpoint

    src = resolve_source(ws, run=run, checkpoint=checkpoint)
    if is_zero_checkpoint(src.checkpoint):
        raise WizardError(
            "a DeepSpeed checkpoint folder: answering from it needs the conversion",
            where=str(src.checkpoint),
            fix="run `xtuner-wizard merge`, then chat with the merged model",
        )
    settings = settings_of_text(src.config.read_text(encoding="utf-8"), src.config.name)
    r = settings.get("lora_r")
    alpha = settings.get("lora_alpha")
    if not isinstance(r, int) or not isinstance(alpha, (int, float)):
        raise WizardError(
            "the run's config trains no LoRA adapter (no lora r / lora_alpha)",
            where=str(src.config),
            fix="run `xtuner-wizard merge`, then chat with the merged model",
        )
    return RunAdapter(src.base_model, src.checkpoint, src.config, src.run_id, r, alpha)


def load_checkpoint_state(pth: Path, ws=None, *, trust_checkpoint: bool = False) -> dict[str, Any]:
    """The model state of an mmengine checkpoint, read lazily (mmap): the optimizer's moments
    in the same file are never read. Tensors only (``weights_only``) when the file allows;
    mmengine's checkpoints also pickle its message hub, so a file of the workspace's own runs
    (``ws``; or one the user vouched for, ``trust_checkpoint``) is then read as pth_to_hf reads
    it; any other is refused with one line (unpickling runs what it holds)."""
    import pickle

    import torch

    try:
        ckpt = torch.load(str(pth), map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        from engine.trust import require_own_checkpoint

        try:
            require_own_checkpoint(ws, pth, consent=trust_checkpoint)
        except WizardError as refused:
            refused.message = "holds more than tensors and " + refused.message
            raise refused from exc
        ckpt = torch.load(str(pth), map_location="cpu", weights_only=False, mmap=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise WizardError("not an mmengine checkpoint (no state_dict)", where=str(pth))
    return state


def lora_pairs(state: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """module name -> (A, B) from a LoRA state dict."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        m = LORA_KEY.match(key)
        if m:
            found.setdefault(m.group("module"), {})[m.group("ab")] = value
    pairs = {name: (ab["A"], ab["B"]) for name, ab in found.items() if "A" in ab and "B" in ab}
    if len(pairs) != len(found):
        broken = sorted(set(found) - set(pairs))[:3]
        raise WizardError(f"LoRA weights without their pair: {', '.join(broken)}")
    return pairs


def fold_lora(model: Any, pairs: dict[str, tuple[Any, Any]], scale: float) -> int:
    """``W += scale * B @ A`` for every adapted linear of ``model``; returns how many."""
    import torch

    modules = dict(model.named_modules())
    folded = 0
    with torch.no_grad():
        for name, (a, b) in pairs.items():
            target = modules.get(name)
            if target is None or not hasattr(target, "weight"):
                raise WizardError(
                    f"the checkpoint adapts {name}, which the base model does not have",
                    fix="chat with the base model the run was trained on (--base)",
                )
            w = target.weight
            delta = (b.to(w.device, torch.float32) @ a.to(w.device, torch.float32)) * scale
            if delta.shape != w.shape:
                raise WizardError(
                    f"LoRA shape {tuple(delta.shape)} does not fit {name} {tuple(w.shape)}",
                    fix="chat with the base model the run was trained on (--base)",
                )
            w.copy_((w.float() + delta).to(w.dtype))
            folded += 1
    if not folded:
        raise WizardError("the checkpoint holds no LoRA weights")
    return folded


def load_run_engine(
    ws,
    run: str | None = None,
    *,
    engine: str = "auto",
    checkpoint: str | Path | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
):
    """A chat engine over the run's base model with its checkpoint's LoRA folded in (the
    base's Python trusted first, or confirmed here with ``trust_remote_code``)."""
    from engine.chat.base import ENGINES, pick_device, resolve_engine
    from engine.chat.hf import load_hf_model
    from engine.chat.templates import resolve_template
    from engine.trust import require_trusted

    found = run_adapter(ws, run, checkpoint)
    require_trusted(
        ws, found.base_model, consent=trust_remote_code, where=f"the run's base {found.base_model}"
    )
    dev = pick_device(device)
    name = resolve_engine(engine, found.base_model, dev)
    if name not in ("hf", "fast", "fast-compile"):
        raise WizardError(
            f"the {name} engine cannot answer from a checkpoint",
            where="--engine",
            fix="use --engine auto, fast or hf; or merge first",
        )
    model, tokenizer = load_hf_model(found.base_model, device=dev, workspace=ws)
    fold_lora(model, lora_pairs(load_checkpoint_state(found.checkpoint, ws)), found.scale)
    tmpl = resolve_template(str(found.config), model_path=found.base_model)
    module_name, class_name = ENGINES[name]
    import importlib

    cls = getattr(importlib.import_module(module_name), class_name)
    eng = cls(found.base_model, template=tmpl, device=dev, model=model, tokenizer=tokenizer)
    eng.model_path = found.checkpoint
    return eng


def prefetch_imports() -> None:
    """Import torch, transformers and peft in a daemon thread (while a run trains), so the
    first answer after it does not wait for them. No CUDA context is made."""
    import threading

    def _imports() -> None:
        try:
            from engine.chat.hf import _auto_classes

            _auto_classes()
        except Exception:  # noqa: BLE001 - only a head start; answer_from_run imports again
            pass

    threading.Thread(target=_imports, name="answer-prefetch", daemon=True).start()


def answer_from_run(
    ws,
    run: str | None,
    prompt: str,
    *,
    engine: str = "auto",
    max_new_tokens: int = 64,
    device: str | None = None,
) -> tuple[str, str]:
    """The tuned model's answer to ``prompt`` straight from the run's checkpoint (no merge):
    (answer, engine name). Called by run-all as soon as training ends."""
    eng = load_run_engine(ws, run, engine=engine, device=device)
    try:
        return eng.chat(
            [{"role": "user", "content": prompt}], max_new_tokens=max_new_tokens
        ), eng.name
    finally:
        eng.close()
