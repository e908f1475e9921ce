"""The fast engine: a batch-1 decode loop over the model's own weights, CUDA graphs on a GPU.

transformers ``generate`` at batch 1 is bound by Python and kernel launches (on an H200 a
1.8B InternLM2 decodes at 21-39 tokens/s while its weights could be read ~1,100 times a
second). Here the model is loaded by transformers (so the weights, the adapter and the remote
code are the same), then its weights are taken out into one flat decode step:

- a static KV cache (``max_len`` positions) written with ``index_copy_`` at the position,
- RMSNorm, rotary embedding, grouped-query attention and the gated MLP written out in PyTorch
  (InternLM2's packed ``wqkv``; Llama/Qwen2-style q/k/v weights are packed the same way),
- on CUDA, one decode step per attention-length bucket (256, 512, ... ``max_len`` keys) captured
  in a CUDA graph and replayed per token; the next step is launched before a token is handed
  out, so decoding text overlaps the GPU.

On a CPU the same step runs eagerly (that is how the tests check it against ``hf``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.chat.base import DEFAULT_MAX_NEW_TOKENS, ChatEngine, GenerationStats, pick_device
from engine.errors import WizardError


@dataclass
class _Layer:
    attn_norm: Any
    wqkv: Any  # [(kvh * (g + 2) * D), H], grouped like InternLM2's wqkv
    bqkv: Any
    wo: Any
    bo: Any
    ffn_norm: Any
    w13: Any  # gate and up stacked: [2I, H]
    w2: Any

    def tensors(self) -> tuple:
        return (
            self.attn_norm,
            self.wqkv,
            self.bqkv,
            self.wo,
            self.bo,
            self.ffn_norm,
            self.w13,
            self.w2,
        )


def _grouped_qkv(q, k, v, kvh: int, g: int, d: int):
    """Stack q/k/v (weights [out, H] or biases [out]) into InternLM2's [kvh, g+2, d] order."""
    import torch

    tail = q.shape[1:]
    return torch.cat(
        [q.reshape(kvh, g, d, *tail), k.reshape(kvh, 1, d, *tail), v.reshape(kvh, 1, d, *tail)],
        dim=1,
    ).reshape(kvh * (g + 2) * d, *tail)


class FastEngine(ChatEngine):
    name = "fast"

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
        max_len: int = 4096,
        cuda_graphs: bool | None = None,
        compile: bool = False,
        workspace=None,
    ) -> None:
        import torch

        super().__init__()
        self.device = pick_device(device)
        self.model_path = model_path
        if model is None:
            from engine.chat.hf import load_hf_model

            model, tokenizer = load_hf_model(
                model_path, adapter=adapter, device=self.device, dtype=dtype, workspace=workspace
            )
        if hasattr(model, "merge_and_unload"):  # a peft model: fold the adapter in
            model = model.merge_and_unload()
        self.tokenizer = tokenizer
        self.template = template
        cfg = model.config
        self.hidden = cfg.hidden_size
        self.n_heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.n_heads
        self.groups = self.n_heads // self.kv_heads
        self.eps = float(getattr(cfg, "rms_norm_eps", 1e-6))
        self.max_len = int(
            min(max_len, getattr(cfg, "max_position_embeddings", max_len) or max_len)
        )
        act = getattr(cfg, "hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise WizardError(
                f"the fast engine supports SiLU MLPs, not {act!r}", fix="use --engine hf"
            )
        with torch.no_grad():
            self._take_weights(model, cfg)
        param = self.lm_head
        self.dtype = param.dtype
        dev = param.device
        self._rope_tables(cfg, dev)
        self.k_cache = torch.zeros(
            cfg.num_hidden_layers,
            self.kv_heads,
            self.max_len,
            self.head_dim,
            dtype=self.dtype,
            device=dev,
        )
        self.v_cache = torch.zeros_like(self.k_cache)
        self._arange = torch.arange(self.max_len, device=dev)
        del model
        if cuda_graphs is None:
            cuda_graphs = dev.type == "cuda"
        self.graphs: dict[int, tuple[Any, Any]] = {}
        self.buckets: list[int] = []
        self._layer_fn = self._layer
        self.compiled = bool(compile)
        if compile:  # inductor fuses the small ops of a layer; one length bucket, one compile
            self._layer_fn = torch.compile(self._layer, dynamic=False)
        if cuda_graphs:
            self._capture(dev)

    # -- weights ---------------------------------------------------------------------
    def _take_weights(self, model, cfg) -> None:
        import torch

        kvh, g, d = self.kv_heads, self.groups, self.head_dim
        base = model.model
        self.layers: list[_Layer] = []
        if hasattr(base, "tok_embeddings"):  # InternLM2
            self.embed = base.tok_embeddings.weight
            self.lm_head = model.output.weight
            for layer in base.layers:
                att, mlp = layer.attention, layer.feed_forward
                self.layers.append(
                    _Layer(
                        attn_norm=layer.attention_norm.weight,
                        wqkv=att.wqkv.weight,
                        bqkv=att.wqkv.bias,
                        wo=att.wo.weight,
                        bo=att.wo.bias,
                        ffn_norm=layer.ffn_norm.weight,
                        w13=torch.cat([mlp.w1.weight, mlp.w3.weight], 0),
                        w2=mlp.w2.weight,
                    )
                )
        elif hasattr(base, "embed_tokens"):  # Llama, Qwen2, Mistral, InternLM3 ...
            self.embed = base.embed_tokens.weight
            self.lm_head = model.lm_head.weight
            for layer in base.layers:
                att, mlp = layer.self_attn, layer.mlp
                bias = None
                if att.q_proj.bias is not None:
                    bias = _grouped_qkv(
                        att.q_proj.bias, att.k_proj.bias, att.v_proj.bias, kvh, g, d
                    )
                self.layers.append(
                    _Layer(
                        attn_norm=layer.input_layernorm.weight,
                        wqkv=_grouped_qkv(
                            att.q_proj.weight, att.k_proj.weight, att.v_proj.weight, kvh, g, d
                        ),
                        bqkv=bias,
                        wo=att.o_proj.weight,
                        bo=att.o_proj.bias,
                        ffn_norm=layer.post_attention_layernorm.weight,
                        w13=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0),
                        w2=mlp.down_proj.weight,
                    )
                )
        else:
            raise WizardError(
                f"the fast engine does not know the {type(model).__name__} layout",
                fix="use --engine hf",
            )
        self.norm = base.norm.weight

    def _rope_tables(self, cfg, dev) -> None:
        import torch

        theta = float(getattr(cfg, "rope_theta", 10000.0))
        scaling = getattr(cfg, "rope_scaling", None) or {}
        kind = scaling.get("type") or scaling.get("rope_type") or "default"
        factor = 1.0
        if kind == "linear":
            factor = float(scaling.get("factor", 1.0))
        elif kind not in (
            "default",
            "dynamic",
        ):  # dynamic NTK only acts past max_position_embeddings
            raise WizardError(
                f"the fast engine does not support rope scaling {kind!r}", fix="use --engine hf"
            )
        d = self.head_dim
        inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float().to(dev) / d))
        pos = torch.arange(self.max_len, device=dev).float() / factor
        freqs = torch.outer(pos, inv_freq)
        emb = torch.cat([freqs, freqs], -1)
        sign = torch.ones(d, device=dev)
        sign[: d // 2] = -1.0
        self.cos = emb.cos().to(self.dtype)
        self.sin = (emb.sin() * sign).to(self.dtype)

    # -- the step ----------------------------------------------------------------------
    # Few kernels per layer matter more than anything else here: a CUDA graph still pays
    # a few microseconds per kernel, and a batch-1 step of a 24-layer model is ~1 ms of weights.
    def _rms(self, x, w):
        import torch.nn.functional as F

        return F.rms_norm(x, (x.shape[-1],), w, self.eps)

    def _layer(self, x, cos, sin, positions, mask, kc, vc, n_keys: int, *w):
        import torch
        import torch.nn.functional as F

        kvh, g, d = self.kv_heads, self.groups, self.head_dim
        t = x.shape[0]
        lw = _Layer(*w)
        h = self._rms(x, lw.attn_norm)
        qkv = F.linear(h, lw.wqkv, lw.bqkv).view(t, kvh, g + 2, d)
        qk = qkv[:, :, : g + 1]  # queries and the key of each KV group: one rotary for both
        qk = torch.addcmul(qk * cos, qk.roll(d // 2, -1), sin)  # sin carries rotate_half's sign
        v = qkv[:, :, g + 1]
        kc.index_copy_(1, positions, qk[:, :, g].transpose(0, 1))
        vc.index_copy_(1, positions, v.transpose(0, 1))
        if self.lm_head.device.type == "cpu":
            # PyTorch's CPU SDPA with a mask costs ~15 ms a call at these tiny shapes: plain
            # matmuls instead (queries grouped per KV head, so no K/V copies either)
            qh = qk[:, :, :g].permute(1, 2, 0, 3).reshape(kvh, g * t, d)
            s = torch.matmul(qh, kc[:, :n_keys].transpose(1, 2)) * d**-0.5
            s = s.view(kvh, g, t, n_keys).masked_fill(~mask, float("-inf"))
            p = torch.softmax(s.float(), -1).to(x.dtype).view(kvh, g * t, n_keys)
            o = torch.matmul(p, vc[:, :n_keys]).view(kvh, g, t, d).permute(2, 0, 1, 3)
            o = o.reshape(t, kvh * g * d)
        else:
            q = qk[:, :, :g].reshape(t, kvh * g, d).transpose(0, 1)  # [heads, T, D]
            o = F.scaled_dot_product_attention(
                q[None], kc[None, :, :n_keys], vc[None, :, :n_keys], attn_mask=mask, enable_gqa=True
            )
            o = o[0].transpose(0, 1).reshape(t, kvh * g * d)
        x = x + F.linear(o, lw.wo, lw.bo)
        gate, up = F.linear(self._rms(x, lw.ffn_norm), lw.w13).chunk(2, -1)
        return x + F.linear(F.silu(gate) * up, lw.w2)

    def _forward(self, tokens, positions, n_keys: int, layer=None):
        """Logits (float32, [1, vocab]) of the last of ``tokens`` at ``positions``; caches K/V."""
        import torch.nn.functional as F

        x = F.embedding(tokens, self.embed)
        cos = self.cos[positions][:, None, None]  # [T, 1, 1, D]
        sin = self.sin[positions][:, None, None]
        mask = self._arange[:n_keys][None, :] <= positions[:, None]  # [T, L], True: attend
        layer = layer or self._layer
        for i, lw in enumerate(self.layers):
            x = layer(
                x,
                cos,
                sin,
                positions,
                mask,
                self.k_cache[i],
                self.v_cache[i],
                n_keys,
                *lw.tensors(),
            )
        x = self._rms(x[-1:], self.norm)
        return F.linear(x, self.lm_head).float()

    def _capture(self, dev) -> None:
        import torch

        self._tok = torch.zeros(1, dtype=torch.long, device=dev)
        self._pos = torch.zeros(1, dtype=torch.long, device=dev)
        n, buckets = (self.max_len if self.compiled else 256), []
        while n < self.max_len:
            buckets.append(n)
            n *= 2
        buckets.append(self.max_len)
        self.buckets = buckets
        with torch.inference_mode():
            stream = torch.cuda.Stream(device=dev)
            stream.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(stream):
                for n_keys in buckets:
                    for _ in range(2):
                        self._forward(self._tok, self._pos, n_keys, self._layer_fn)
            torch.cuda.current_stream(dev).wait_stream(stream)
            pool = None
            for n_keys in reversed(buckets):
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    out = self._forward(self._tok, self._pos, n_keys, self._layer_fn)
                pool = graph.pool()
                self.graphs[n_keys] = (graph, out)
            torch.cuda.synchronize(dev)

    def _bucket(self, n_keys: int) -> int:
        for b in self.buckets:
            if b >= n_keys:
                return b
        return self.max_len

    def _launch(self, tok: int, pos: int):
        """Start the step that feeds ``tok`` at ``pos``; returns its logits (maybe not ready)."""
        import torch

        if self.graphs:
            self._tok.fill_(tok)
            self._pos.fill_(pos)
            graph, out = self.graphs[self._bucket(pos + 1)]
            graph.replay()
            return out
        dev = self.lm_head.device
        return self._forward(
            torch.tensor([tok], device=dev), torch.tensor([pos], device=dev), pos + 1
        )

    @staticmethod
    def _pick(logits, temperature: float, top_p: float, gen) -> int:
        import torch

        if not temperature or temperature <= 0:
            return int(torch.argmax(logits[0]))
        probs = torch.softmax(logits[0] / temperature, -1)
        if top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, 0) - sorted_p < top_p
            sorted_p = sorted_p * keep
            choice = torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=gen)
            return int(order[choice])
        return int(torch.multinomial(probs, 1, generator=gen))

    def generate_tokens(
        self,
        prompt_ids: list[int],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop_event: threading.Event | None = None,
        ignore_eos: bool = False,
        seed: int = 0,
    ) -> Iterator[int]:
        import torch

        n_prompt = len(prompt_ids)
        if n_prompt == 0:
            raise WizardError("empty prompt")
        if n_prompt + 1 > self.max_len:
            raise WizardError(
                f"the conversation ({n_prompt} tokens) is longer than the engine's {self.max_len}",
                fix="clear the chat history",
            )
        stop_ids = set() if ignore_eos else self.stop_token_ids()
        stats = self.stats = GenerationStats(prompt_tokens=n_prompt)
        dev = self.lm_head.device
        gen = (
            torch.Generator(device=dev).manual_seed(seed)
            if temperature and temperature > 0
            else None
        )
        t0 = time.perf_counter()
        first = None
        with torch.inference_mode():
            ids = torch.tensor(prompt_ids, dtype=torch.long, device=dev)
            logits = self._forward(ids, torch.arange(n_prompt, device=dev), n_prompt)
            pos = n_prompt
            for step in range(max_new_tokens):
                tok = self._pick(logits, temperature, top_p, gen)
                now = time.perf_counter()
                if first is None:
                    first = now
                    stats.time_to_first_token = now - t0
                stats.decode_seconds = now - first
                if stop_event is not None and stop_event.is_set():
                    stats.stopped = True
                    return
                if tok in stop_ids:
                    return
                if step + 1 < max_new_tokens and pos < self.max_len:
                    logits = self._launch(tok, pos)  # runs while the caller handles ``tok``
                    pos += 1
                stats.new_tokens += 1
                yield tok
                if pos >= self.max_len:
                    return

    def close(self) -> None:
        self.graphs.clear()
        self.layers = []
        self.k_cache = self.v_cache = None


class CompiledFastEngine(FastEngine):
    """``fast`` with torch.compile fusing each layer's small ops before the graphs are captured."""

    name = "fast-compile"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("compile", True)
        super().__init__(*args, **kwargs)
