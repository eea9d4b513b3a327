"""A compact Llama-family decoder for inference (Llama 2/3, Qwen2/2.5, Qwen3, Mistral), fed from HF weights.

It knows two passes over a static KV cache laid out ``(L, S, Hkv, T, D)`` (layers, sequence slots, KV heads,
cache length, head dim):

- :meth:`LlamaDecoder.prefill`: prompts right-padded to ``(N, P)``, causal attention, K/V written to the cache
  rows of every slot that shares a prompt, logits of each prompt's last token.
- :meth:`LlamaDecoder.decode`: one new token for each of the first ``B`` slots, attention over the whole
  (masked) cache row. All shapes are fixed for a given ``B``, so the step can be captured in a CUDA graph.

The math matches ``transformers``' modeling files (RMSNorm in float32, HF's half-split RoPE, SDPA attention),
so greedy tokens and log-probs agree with ``transformers`` in float32.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from verl.models.config import DecoderConfig
from verl.models.rope import apply_rope, rope_table
from verl.models.weights import GLOBAL_FIELDS, LAYER_FIELDS, map_hf_name, required_slots

__all__ = ["LlamaDecoder"]

_ACTIVATIONS = {
    "silu": F.silu,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * x / rms(x)`` over the last dim, computed in float32 as HF does, cast back before the scale.

    Reference: Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019).
    """
    dtype = x.dtype
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(dtype)


class LlamaDecoder:
    """Inference-only Llama-family decoder whose weights are plain tensors taken from an HF state dict.

    Fused q/k/v and gate/up weights are owned copies; every other weight is *shared* with the source tensor of
    the first load when its dtype and device already match (no copy). Later loads copy into owned tensors in
    place (device pointers stay valid); a shared slot is never written into: the first differing update takes
    an owned copy (copy-on-write) and bumps :attr:`version`, so holders of device pointers (CUDA graphs) know
    to re-capture. Loading the very tensor already in use is free.

    Args:
        config: the architecture (see :meth:`DecoderConfig.from_hf`).
        device: where the weights live and the passes run.
        dtype: weight / activation dtype.
    """

    def __init__(self, config: DecoderConfig, device: torch.device | str, dtype: torch.dtype):
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        self.version = 0
        self.layers: list[dict[str, torch.Tensor | None]] = [dict.fromkeys(LAYER_FIELDS) for _ in range(config.num_layers)]
        self.globals: dict[str, torch.Tensor | None] = dict.fromkeys(GLOBAL_FIELDS)
        self._shared: set[tuple[int | None, str]] = set()
        self._act = _ACTIVATIONS[config.hidden_act]
        self.cos = self.sin = torch.empty(0)

    # ------------------------------------------------------------------------------------------ weights

    def _get(self, layer: int | None, field: str) -> torch.Tensor | None:
        return self.globals[field] if layer is None else self.layers[layer][field]

    def _set(self, layer: int | None, field: str, value: torch.Tensor | None) -> None:
        if layer is None:
            self.globals[field] = value
        else:
            self.layers[layer][field] = value

    def _fused_rows(self, field: str) -> int:
        c = self.config
        return c.q_size + 2 * c.kv_size if field.startswith("qkv") else 2 * c.intermediate_size

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], share: bool = True) -> list[str]:
        """Load ``(hf_name, tensor)`` pairs (a ``state_dict().items()``-style iterator); returns the names loaded.

        DTensors (FSDP2 shards) are gathered with ``full_tensor()``. ``lm_head.weight`` may be absent when the
        embeddings are tied. With ``share``, a whole (unfused) tensor whose dtype and device match is used in
        place instead of copied.
        """
        loaded = []
        for name, tensor in named_tensors:
            slot = map_hf_name(self.config, name)
            if slot is None:
                continue
            if hasattr(tensor, "full_tensor"):
                tensor = tensor.full_tensor()
            tensor = tensor.detach()
            self._check_expected(name, slot.field)
            if slot.fused:
                self._load_fused(name, slot.layer, slot.field, slot.start, slot.stop, tensor)
            elif slot.field == "lm_head" and self.config.tie_word_embeddings:
                continue  # tied: the embedding is the output projection
            else:
                self._load_whole(name, slot.layer, slot.field, tensor, share)
            loaded.append(name)
        if self.config.tie_word_embeddings:
            self.globals["lm_head"] = self.globals["embed"]
        return loaded

    def _check_expected(self, name: str, field: str) -> None:
        c = self.config
        unexpected = {
            "qkv_bias": not c.qkv_bias, "o_bias": not c.o_bias, "gate_up_bias": not c.mlp_bias,
            "down_bias": not c.mlp_bias, "q_norm": not c.qk_norm, "k_norm": not c.qk_norm,
        }
        if unexpected.get(field, False):
            raise ValueError(
                f"weight {name!r} is not used by this config ({c.model_type}: qkv_bias={c.qkv_bias}, "
                f"o_bias={c.o_bias}, mlp_bias={c.mlp_bias}, qk_norm={c.qk_norm}); the checkpoint and its "
                "config.json disagree (check attention_bias / mlp_bias)"
            )

    def _load_fused(self, name: str, layer: int | None, field: str, start: int, stop: int, src: torch.Tensor) -> None:
        dst = self._get(layer, field)
        if dst is None:
            shape = (self._fused_rows(field),) + tuple(src.shape[1:])
            dst = torch.empty(shape, device=self.device, dtype=self.dtype)
            self._set(layer, field, dst)
        if dst[start:stop].shape != src.shape:
            raise ValueError(f"weight {name!r} has shape {tuple(src.shape)}, expected {tuple(dst[start:stop].shape)}")
        dst[start:stop].copy_(src)

    def _load_whole(self, name: str, layer: int | None, field: str, src: torch.Tensor, share: bool) -> None:
        dst = self._get(layer, field)
        if dst is not None and dst.shape != src.shape:
            raise ValueError(f"weight {name!r} has shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
        key = (layer, field)
        if dst is not None and dst.data_ptr() == src.data_ptr() and dst.dtype == src.dtype:
            return  # the very tensor we already use (shared with the actor): nothing to do
        if dst is not None and key not in self._shared:
            dst.copy_(src)  # owned: update in place, device pointers stay valid
        elif dst is None and share and src.dtype == self.dtype and src.device == self.device and src.is_contiguous():
            self._set(layer, field, src)  # first load: use the source tensor itself, no copy
            self._shared.add(key)
        else:
            # first load that needs a cast/move, or copy-on-write of a shared slot: never write into the source
            self._set(layer, field, src.to(device=self.device, dtype=self.dtype, copy=True))
            self._shared.discard(key)
            self.version += dst is not None

    def check_complete(self) -> None:
        """Raise naming the HF weights that were never loaded."""
        missing = [n for (layer, field), names in required_slots(self.config).items()
                   if self._get(layer, field) is None for n in names]
        if missing:
            more = f" (and {len(missing) - 8} more)" if len(missing) > 8 else ""
            raise ValueError(f"the native decoder is missing weights {missing[:8]}{more}; pass a full state dict")

    def named_weights(self) -> Iterable[tuple[tuple[int | None, str], torch.Tensor]]:
        for field, t in self.globals.items():
            if t is not None and not (field == "lm_head" and self.config.tie_word_embeddings):
                yield (None, field), t
        for i, layer in enumerate(self.layers):
            for field, t in layer.items():
                if t is not None:
                    yield (i, field), t

    def move_owned(self, device: torch.device | str) -> None:
        """Move the weights this decoder owns to ``device`` (shared ones stay with their owner); bumps version."""
        for (layer, field), t in list(self.named_weights()):
            if (layer, field) not in self._shared:
                self._set(layer, field, t.to(device, non_blocking=False))
        if self.config.tie_word_embeddings:
            self.globals["lm_head"] = self.globals["embed"]
        self.version += 1

    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for _, t in self.named_weights())

    # ------------------------------------------------------------------------------------------ RoPE

    def ensure_rope(self, length: int) -> None:
        """Precompute cos/sin for positions ``< length`` (grows the table; bumps version when it does)."""
        if self.cos.shape[0] >= length:
            return
        length = max(length, 2 * self.cos.shape[0])
        self.cos, self.sin = rope_table(self.config.rope, length, self.device)
        self.version += 1

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin ``positions.shape + (1, D)`` in the activation dtype (the 1 broadcasts over heads)."""
        return self.cos[positions].to(self.dtype).unsqueeze(-2), self.sin[positions].to(self.dtype).unsqueeze(-2)

    # ------------------------------------------------------------------------------------------ passes

    def _qkv(self, x: torch.Tensor, layer: dict[str, Any], cos: torch.Tensor, sin: torch.Tensor):
        """Project ``x (..., hidden)`` to roped q ``(..., H, D)`` and k, v ``(..., Hkv, D)``."""
        c = self.config
        qkv = F.linear(x, layer["qkv_weight"], layer["qkv_bias"])  # (..., (H + 2 Hkv) D)
        q, k, v = qkv.split([c.q_size, c.kv_size, c.kv_size], dim=-1)
        q = q.unflatten(-1, (c.num_heads, c.head_dim))  # (..., H, D)
        k = k.unflatten(-1, (c.num_kv_heads, c.head_dim))  # (..., Hkv, D)
        v = v.unflatten(-1, (c.num_kv_heads, c.head_dim))
        if c.qk_norm:
            q = rms_norm(q, layer["q_norm"], c.rms_norm_eps)
            k = rms_norm(k, layer["k_norm"], c.rms_norm_eps)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _out_proj(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """A projection back to the hidden size (attention output, MLP down); a subclass may override it (e.g.
        to sum partial products computed elsewhere)."""
        return F.linear(x, weight, bias)

    def _mlp_residual(self, h: torch.Tensor, attn: torch.Tensor, layer: dict[str, Any]) -> torch.Tensor:
        """``h + attn`` then the gated MLP block with its own residual."""
        c = self.config
        h = h + self._out_proj(attn, layer["o_weight"], layer["o_bias"])
        x = rms_norm(h, layer["post_norm"], c.rms_norm_eps)
        gate, up = F.linear(x, layer["gate_up_weight"], layer["gate_up_bias"]).chunk(2, dim=-1)
        return h + self._out_proj(self._act(gate) * up, layer["down_weight"], layer["down_bias"])

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(rms_norm(h, self.globals["norm"], self.config.rms_norm_eps), self.globals["lm_head"])

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Full causal forward without a cache: ``(N, P)`` tokens -> ``(N, P, V)`` logits (tests, scoring)."""
        c = self.config
        h = F.embedding(input_ids, self.globals["embed"])  # (N, P, hidden)
        cos, sin = self._rope(positions)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(rms_norm(h, layer["input_norm"], c.rms_norm_eps), layer, cos, sin)
            attn = self._causal_attention(q, k, v, c.sliding_windows[i])
            h = self._mlp_residual(h, attn, layer)
        return self._logits(h)

    @staticmethod
    def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None) -> torch.Tensor:
        """q ``(N, P, H, D)``, k/v ``(N, P, Hkv, D)`` -> ``(N, P, H*D)`` with causal (+ sliding-window) masking."""
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (N, heads, P, D)
        length = q.shape[2]
        if window is None or window >= length:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            idx = torch.arange(length, device=q.device)
            mask = (idx[None, :] <= idx[:, None]) & (idx[None, :] > idx[:, None] - window)  # (P, P)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return out.transpose(1, 2).flatten(2)  # (N, P, H*D)

    @torch.inference_mode()
    def prefill(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        last_index: torch.Tensor,
        cache_k: torch.Tensor,
        cache_v: torch.Tensor,
        slots: torch.Tensor,
        source: torch.Tensor,
    ) -> torch.Tensor:
        """Run right-padded prompts and fill the KV cache of every slot that uses them.

        Args:
            input_ids, positions: ``(N, P)`` unique prompts, right-padded (padding is never attended to by the
                real tokens, which sit before it).
            last_index: ``(N,)`` index of each prompt's last real token.
            cache_k, cache_v: ``(L, S, Hkv, T, D)`` KV cache, ``T >= P``.
            slots: ``(M,)`` cache slots to fill; ``source``: ``(M,)`` which prompt row fills each slot (identical
                prompts sampled ``n`` times are prefilled once and copied ``n`` times).

        Returns:
            ``(N, V)`` logits at each prompt's last token.
        """
        c = self.config
        n, p = input_ids.shape
        h = F.embedding(input_ids, self.globals["embed"])  # (N, P, hidden)
        cos, sin = self._rope(positions)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(rms_norm(h, layer["input_norm"], c.rms_norm_eps), layer, cos, sin)
            cache_k[i, slots, :, :p] = k.transpose(1, 2)[source]  # (M, Hkv, P, D)
            cache_v[i, slots, :, :p] = v.transpose(1, 2)[source]
            attn = self._causal_attention(q, k, v, c.sliding_windows[i])
            h = self._mlp_residual(h, attn, layer)
        last = h[torch.arange(n, device=h.device), last_index]  # (N, hidden)
        return self._logits(last)

    def decode(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        write_index: torch.Tensor,
        cache_k: torch.Tensor,
        cache_v: torch.Tensor,
    ) -> torch.Tensor:
        """One decode step for slots ``0 .. B-1``: fixed shapes, no host sync (CUDA-graph capturable).

        Args:
            tokens, positions: ``(B,)`` last sampled token of each slot and its RoPE position.
            write_index: ``(B,)`` cache index the token's K/V go to; keys ``<= write_index`` are attended.
            cache_k, cache_v: ``(L, S, Hkv, T, D)`` with ``S >= B``.

        Returns:
            ``(B, V)`` next-token logits.
        """
        c = self.config
        b = tokens.shape[0]
        groups = c.num_heads // c.num_kv_heads
        rows = torch.arange(b, device=tokens.device)
        key_idx = torch.arange(cache_k.shape[3], device=tokens.device)  # (T,)
        causal = key_idx[None, :] <= write_index[:, None]  # (B, T)
        masks = {w: (causal if w is None else causal & (key_idx[None, :] > write_index[:, None] - w))[:, None, None, :]
                 for w in set(c.sliding_windows)}  # (B, 1, 1, T) per distinct window
        h = F.embedding(tokens, self.globals["embed"])  # (B, hidden)
        cos, sin = self._rope(positions)  # (B, 1, D)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(rms_norm(h, layer["input_norm"], c.rms_norm_eps), layer, cos, sin)
            cache_k[i, rows, :, write_index] = k  # (B, Hkv, D) into (B, Hkv, T, D) at each row's index
            cache_v[i, rows, :, write_index] = v
            # one query per sequence: the G query heads of a KV group act as G "query positions" of that group
            q = q.view(b, c.num_kv_heads, groups, c.head_dim)  # (B, Hkv, G, D)
            attn = F.scaled_dot_product_attention(
                q, cache_k[i, :b], cache_v[i, :b], attn_mask=masks[c.sliding_windows[i]]
            )  # (B, Hkv, G, D)
            h = self._mlp_residual(h, attn.reshape(b, c.q_size), layer)
        return self._logits(h)
