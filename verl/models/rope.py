"""Rotary position embeddings (RoPE) with the scalings Llama-family checkpoints use.

Reference: Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding" (2021). Scalings:
``linear`` (position interpolation, Chen et al. 2023), ``llama3`` (Meta's Llama 3.1 frequency-band scaling) and
``yarn`` (Peng et al., "YaRN: Efficient Context Window Extension of Large Language Models", 2023).

The half-split layout is HF's: ``x * cos + rotate_half(x) * sin`` with ``cos = cat(cos(f), cos(f))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["RopeConfig", "SUPPORTED_ROPE_TYPES", "apply_rope", "rope_inv_freq", "rope_table"]

SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


@dataclass(frozen=True)
class RopeConfig:
    """RoPE settings read from an HF config (``rope_theta``, ``rope_scaling``)."""

    head_dim: int
    """Per-head size; the rotated part is all of it (``partial_rotary_factor`` is not used by this family)."""
    theta: float = 10000.0
    """Base of the frequencies ``theta ** (-2i / d)``."""
    rope_type: str = "default"
    """One of :data:`SUPPORTED_ROPE_TYPES`."""
    scaling: Mapping[str, Any] = field(default_factory=dict)
    """The ``rope_scaling`` dict (factor, low/high_freq_factor, original_max_position_embeddings, beta_*, ...)."""
    max_position_embeddings: int = 2048
    """The model's context length (YaRN falls back to it for ``original_max_position_embeddings``)."""


def _llama3_inv_freq(inv_freq: torch.Tensor, s: Mapping[str, Any]) -> torch.Tensor:
    """Divide low frequencies by ``factor``, keep high ones, blend the band in between."""
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_len = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, blended, scaled)


def _yarn_inv_freq(cfg: RopeConfig, s: Mapping[str, Any]) -> tuple[torch.Tensor, float]:
    """YaRN: interpolate low frequencies, extrapolate high ones, ramp in between; scale attention by mscale."""
    dim, base, factor = cfg.head_dim, cfg.theta, s["factor"]
    orig_len = s.get("original_max_position_embeddings") or cfg.max_position_embeddings

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = s.get("attention_factor")
    if attention_factor is None:
        m, m_all = s.get("mscale"), s.get("mscale_all_dim")
        attention_factor = float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)

    def correction_dim(rotations: float) -> float:  # the dim index that turns `rotations` times over orig_len
        return dim * math.log(orig_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(s.get("beta_fast") or 32), correction_dim(s.get("beta_slow") or 1)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    extrapolated, interpolated = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    keep_extrapolated = 1 - ramp
    inv_freq = interpolated * (1 - keep_extrapolated) + extrapolated * keep_extrapolated
    return inv_freq, attention_factor


def rope_inv_freq(cfg: RopeConfig) -> tuple[torch.Tensor, float]:
    """The ``(head_dim / 2,)`` float32 inverse frequencies and the factor cos/sin are multiplied by."""
    if cfg.rope_type not in SUPPORTED_ROPE_TYPES:
        raise NotImplementedError(
            f"rope_type {cfg.rope_type!r} is not supported by the native engine (supported: "
            f"{list(SUPPORTED_ROPE_TYPES)}); use rollout name=hf for this model"
        )
    if cfg.rope_type == "yarn":
        return _yarn_inv_freq(cfg, cfg.scaling)
    exponents = torch.arange(0, cfg.head_dim, 2, dtype=torch.int64).float() / cfg.head_dim
    inv_freq = 1.0 / (cfg.theta**exponents)  # (D/2,)
    if cfg.rope_type == "linear":
        inv_freq = inv_freq / cfg.scaling["factor"]
    elif cfg.rope_type == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, cfg.scaling)
    return inv_freq, 1.0


def rope_table(cfg: RopeConfig, length: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` tables of shape ``(length, head_dim)`` in float32 for positions ``0 .. length-1``."""
    inv_freq, attention_factor = rope_inv_freq(cfg)
    positions = torch.arange(length, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)  # (T, D/2), one product per entry as in HF's matmul form
    emb = torch.cat([freqs, freqs], dim=-1)  # (T, D)
    return (emb.cos() * attention_factor).to(device), (emb.sin() * attention_factor).to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(..., H, D)`` by ``cos, sin`` ``(..., 1, D)`` (already gathered at each token's position)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # rotate_half
    return x * cos + rotated * sin
