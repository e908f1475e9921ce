"""Fused GPU kernels for LoRA training, patched into the model xtuner builds (issue 15).

The rendered config calls :func:`install` (one line after its imports, like the epoch-stall
patch): it wraps ``xtuner.model.sft.SupervisedFinetune.__init__`` so that, once xtuner has
built the model, applied its own dispatch and wrapped it with LoRA, the modules are patched
in place. XTuner still trains: its loop, its LoRA (peft), its optimizer, its hooks.

What is patched (InternLM2, xtuner's own modelling code; each also checked by name):
- ``InternLM2RMSNorm``: liger-kernel's Triton RMSNorm ("llama" casting: the same fp32 inverse
  RMS, output cast to the input dtype before the weight, as the module computes);
- ``InternLM2MLP``: ``w2(silu(w1(x)) * w3(x))`` with liger's fused SiLU-multiply;
- ``apply_rotary_pos_emb`` of the modelling module: liger's rotary kernel;
- ``InternLM2ForCausalLM.forward`` in training with labels: liger's fused linear
  cross-entropy (the logits are never materialised: 8 x 2048 x 92,544 in fp32 is 5.7 GiB, and
  its softmax and gradient as much again). The output head has LoRA (xtuner's
  ``find_all_linear_names`` keeps ``output``): its weight is folded, ``W + s * B @ A`` (exact
  when lora_dropout is 0; with dropout the original forward runs);
- peft's LoRA layers: no fp32 copy of each input under autocast. peft casts a LoRA input to
  its adapter's dtype (float32) and autocast casts it back to bf16 for the matmul: bf16 ->
  fp32 -> bf16 is exact, so skipping both copies changes no number. Outside autocast
  (generation), peft's cast stays;
- peft's LoRA ``Linear.forward`` (one adapter, no dropout, no DoRA/variant, under autocast on
  CUDA): ``base(x) + B(A(x)) * s`` as ``addmm(base(x), A(x), B^T, alpha=s)``: the scale and
  the add happen in the GEMM's epilogue instead of two more passes over a (tokens x out)
  tensor each way (forward and backward); the result is rounded once instead of three times.
  peft still owns the adapters, their weights and their saving; only the arithmetic's order
  of passes changes.

Needs CUDA and liger-kernel (``liger_kernel``); without either, :func:`install` does nothing
but say so. Each patch can be switched off: ``install(rope=False)``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

PATCHES = ("rms_norm", "swiglu", "rope", "fused_ce", "lora_cast", "lora_addmm")
_INSTALLED: dict[str, bool] = {}


def _log(msg: str) -> None:
    try:
        from mmengine.logging import print_log

        print_log(f"xtuner-wizard kernels: {msg}", logger="current")
    except Exception:  # noqa: BLE001 - logging must never break training
        print(f"xtuner-wizard kernels: {msg}", file=sys.stderr)


def available() -> str | None:
    """None when the fused kernels can run here, else why not."""
    try:
        import torch
    except ImportError:
        return "no torch"
    if not torch.cuda.is_available():
        return "no CUDA"
    try:
        import liger_kernel  # noqa: F401
        import triton  # noqa: F401
    except ImportError as exc:
        return f"liger-kernel not importable ({exc})"
    return None


# -- the patches -------------------------------------------------------------------------
def _rms_norm_forward(self: Any, hidden_states: Any) -> Any:
    if not hidden_states.is_cuda:
        return self._wizard_forward(hidden_states)
    from liger_kernel.ops.rms_norm import LigerRMSNormFunction

    return LigerRMSNormFunction.apply(
        hidden_states, self.weight, self.variance_epsilon, 0.0, "llama", True
    )


def _swiglu_forward(self: Any, x: Any) -> Any:
    if not x.is_cuda:
        return self._wizard_forward(x)
    from liger_kernel.ops.swiglu import LigerSiLUMulFunction

    return self.w2(LigerSiLUMulFunction.apply(self.w1(x), self.w3(x)))


def _lora_head_weight(head: Any) -> Any:
    """The output head's effective weight (V, H), or None when it cannot be folded exactly."""
    import torch

    base = getattr(head, "base_layer", None)
    if base is None:  # a plain Linear (no LoRA on the head)
        if isinstance(head, torch.nn.Linear) and head.bias is None:
            return head.weight
        return None
    if getattr(base, "bias", None) is not None or getattr(head, "merged", False):
        return None
    if type(base.weight) is not torch.nn.Parameter or not base.weight.dtype.is_floating_point:
        return None  # a quantized base (bitsandbytes' Params4bit): no fold
    if getattr(head, "disable_adapters", False):
        return base.weight
    weight = base.weight
    for name in head.active_adapters:
        if name not in head.lora_A:
            continue
        if not isinstance(head.lora_dropout[name], torch.nn.Identity):
            return None  # dropout on the head's input: no exact fold
        if getattr(head, "use_dora", {}).get(name, False):
            return None
        a = head.lora_A[name].weight
        b = head.lora_B[name].weight
        delta = (b.to(weight.dtype) @ a.to(weight.dtype)) * head.scaling[name]
        weight = weight + delta
    return weight


def _fused_ce_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    """``InternLM2ForCausalLM.forward`` with the loss by liger's fused linear cross-entropy."""
    labels = kwargs.get("labels")
    if (
        args
        or labels is None
        or not self.training
        or getattr(self.config, "pretraining_tp", 1) > 1
        or kwargs.get("return_dict") is False
        or labels.device.type != "cuda"
    ):
        return self._wizard_forward(*args, **kwargs)
    weight = _lora_head_weight(self.output)
    if weight is None:
        return self._wizard_forward(*args, **kwargs)
    import torch
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction
    from transformers.modeling_outputs import CausalLMOutputWithPast

    kwargs.pop("labels")
    outputs = self.model(**kwargs)
    hidden = outputs[0]
    h = hidden[..., :-1, :].reshape(-1, hidden.shape[-1])
    target = labels[..., 1:].reshape(-1).to(h.device)
    # (input, weight, target, bias, ce_weight, ignore_index, lse_square_scale,
    #  label_smoothing, reduction, softcap, return_z_loss, accum_dtype): the mean over the
    # labelled tokens, as CrossEntropyLoss; the head's gradient accumulated in fp32
    loss = LigerFusedLinearCrossEntropyFunction.apply(
        h, weight, target, None, None, -100, 0.0, 0.0, "mean", None, False, torch.float32
    )
    if isinstance(loss, tuple):
        loss = loss[0]
    return CausalLMOutputWithPast(
        loss=loss,
        logits=None,
        past_key_values=getattr(outputs, "past_key_values", None),
        hidden_states=getattr(outputs, "hidden_states", None),
        attentions=getattr(outputs, "attentions", None),
    )


def _lora_cast(self: Any, x: Any, dtype: Any) -> Any:
    import torch

    if (
        isinstance(x, torch.Tensor)
        and x.is_floating_point()
        and x.device.type == "cuda"
        and torch.is_autocast_enabled("cuda")
    ):
        return x  # autocast runs the LoRA matmul in its dtype anyway
    return self._wizard_cast(x, dtype)


def _lora_addmm_ready(self: Any) -> str | None:
    """The one adapter that :func:`lora_addmm` can compute for this peft LoRA Linear, or None."""
    import torch

    if not hasattr(self, "lora_A") or not hasattr(self, "base_layer"):
        return None
    if self.disable_adapters or self.merged or len(self.active_adapters) != 1:
        return None
    name = self.active_adapters[0]
    base = getattr(self, "base_layer", None)
    if (
        name not in self.lora_A
        or name in getattr(self, "lora_variant", {})
        or getattr(self, "use_dora", {}).get(name, False)
        or getattr(self, "lora_bias", {}).get(name, False)
        or not isinstance(self.lora_dropout[name], torch.nn.Identity)
        or type(base) is not torch.nn.Linear  # not a quantized base (bitsandbytes)
    ):
        return None
    return name


def lora_addmm(self: Any, x: Any, name: str) -> Any:
    """``base(x) + B(A(x)) * scaling`` with the scale and the add in one GEMM (``addmm``)."""
    import torch
    import torch.nn.functional as F

    result = self.base_layer(x)
    a = F.linear(x, self.lora_A[name].weight)
    out = torch.addmm(
        result.reshape(-1, result.shape[-1]),
        a.reshape(-1, a.shape[-1]),
        self.lora_B[name].weight.t(),
        alpha=self.scaling[name],
    )
    return out.view(result.shape)


def _lora_addmm_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    if (
        not args
        and not kwargs
        and isinstance(x, torch.Tensor)
        and x.device.type == "cuda"
        and torch.is_autocast_enabled("cuda")
    ):
        name = _lora_addmm_ready(self)
        if name is not None:
            return lora_addmm(self, x, name)
    return self._wizard_lora_forward(x, *args, **kwargs)


def _bind(module: Any, name: str, fn: Any, keep: str) -> None:
    if not hasattr(module, keep):
        setattr(module, keep, getattr(module, name))
    setattr(module, name, types.MethodType(fn, module))


def patch_model(model: Any, **enabled: bool) -> dict[str, int]:
    """Patch the modules of a built (and LoRA-wrapped) model in place; counts per patch."""
    import torch

    want = {p: enabled.get(p, True) for p in PATCHES}
    counts = dict.fromkeys(PATCHES, 0)
    for module in model.modules():
        cls = type(module).__name__
        if want["rms_norm"] and cls == "InternLM2RMSNorm" and hasattr(module, "variance_epsilon"):
            _bind(module, "forward", _rms_norm_forward, "_wizard_forward")
            counts["rms_norm"] += 1
        elif (
            want["swiglu"]
            and cls == "InternLM2MLP"
            and getattr(module.config, "hidden_act", "silu") == "silu"
        ):
            _bind(module, "forward", _swiglu_forward, "_wizard_forward")
            counts["swiglu"] += 1
        elif want["rope"] and cls in ("InternLM2Attention", "InternLM2SdpaAttention"):
            mod = sys.modules.get(type(module).__module__)
            if mod is not None and getattr(mod, "_wizard_rope", None) is None:
                from liger_kernel.transformers.rope import liger_rotary_pos_emb

                mod._wizard_rope = mod.apply_rotary_pos_emb
                mod.apply_rotary_pos_emb = liger_rotary_pos_emb
                counts["rope"] += 1
        elif want["fused_ce"] and cls == "InternLM2ForCausalLM":
            _bind(module, "forward", _fused_ce_forward, "_wizard_forward")
            counts["fused_ce"] += 1
        if (
            want["lora_cast"]
            and hasattr(module, "lora_A")
            and hasattr(module, "_cast_input_dtype")
            and isinstance(module, torch.nn.Module)
        ):
            _bind(module, "_cast_input_dtype", _lora_cast, "_wizard_cast")
            counts["lora_cast"] += 1
        if (
            want["lora_addmm"]
            and cls == "Linear"
            and type(module).__module__.startswith("peft.tuners.lora")
            and hasattr(module, "lora_A")
        ):
            _bind(module, "forward", _lora_addmm_forward, "_wizard_lora_forward")
            counts["lora_addmm"] += 1
    if enabled.get("compile_layers", False):  # opt-in, measured by benchmarks/gpu_mfu.py
        layers = [m for m in model.modules() if type(m).__name__ == "InternLM2DecoderLayer"]
        for layer in layers:
            layer.compile()  # torch.compile each decoder layer in place (one code, one graph)
        counts["compile_layers"] = len(layers)
    return counts


def install(**enabled: bool) -> bool:
    """Patch every model xtuner's ``SupervisedFinetune`` builds from now on (once per
    process). Returns whether the kernels are in use."""
    if _INSTALLED:
        return _INSTALLED.get("on", False)
    why = available()
    if why is not None:
        _INSTALLED["on"] = False
        _log(f"off ({why}); training runs without them")
        return False
    from xtuner.model.sft import SupervisedFinetune

    original = SupervisedFinetune.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        counts = patch_model(self.llm, **enabled)
        _log(", ".join(f"{k} {v}" for k, v in counts.items()))

    SupervisedFinetune.__init__ = __init__  # type: ignore[method-assign]
    _INSTALLED["on"] = True
    return True
