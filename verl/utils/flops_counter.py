"""verl's ``verl.utils.flops_counter``: achieved training FLOP/s of a dense decoder and the device's peak.

:class:`FlopsCounter` counts a forward plus backward pass (3 x the forward's 2 FLOPs per multiply-add) over the
model's linear layers (attention projections, gated MLP, embedding and LM head) for every token, plus attention's
score and value products, which grow with each sequence's length squared. Model types without this dense layout
(mixture-of-experts, vision towers) are reported as 0, as verl does for model types it does not know.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

__all__ = ["DENSE_MODEL_TYPES", "MOE_MODEL_TYPES", "FlopsCounter", "get_device_flops"]

logger = logging.getLogger(__name__)

# Dense bf16 tensor-core peaks (FLOP/s) by device-name fragment; the longest matching fragment wins.
DEVICE_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "H20": 148e12, "A100": 312e12,
                     "A800": 312e12, "L40S": 362e12, "L40": 181e12, "A40": 149.7e12, "L20": 119.5e12,
                     "MI300X": 1307e12, "MI250": 362e12, "B200": 2250e12}

DENSE_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral", "qwen2_vl", "qwen2_5_vl", "minicpmv",
                               "minicpmo", "seed_oss", "glm4v", "mimo"})
"""Model types whose layers are the dense attention + gated-MLP layout :class:`FlopsCounter` counts."""
MOE_MODEL_TYPES = frozenset({"qwen2_moe", "qwen3_moe"})
"""Model types with the same attention and a routed mixture of gated-MLP experts (the active experts count)."""

_UNITS = {"B": 1e9, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


def device_peak_flops(device_name: str | None = None) -> float | None:
    """The bf16 peak of ``device_name`` (default: the current accelerator) in FLOP/s; None when unknown or CPU."""
    if device_name is None:
        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    matches = [k for k in DEVICE_PEAK_FLOPS if k in device_name]
    return DEVICE_PEAK_FLOPS[max(matches, key=len)] if matches else None


def get_device_flops(unit: str = "T", device_name: str | None = None) -> float:
    """The device's peak in ``unit`` (``B``/``K``/``M``/``G``/``T``/``P``); ``inf`` for an unknown device or the CPU,
    so an MFU computed against it reads 0 (verl's convention)."""
    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {sorted(_UNITS)}, got {unit!r}")
    peak = device_peak_flops(device_name)
    return float("inf") if peak is None else peak / _UNITS[unit]


class FlopsCounter:
    """``FlopsCounter(hf_config).estimate_flops(batch_seqlens, delta_time)`` -> ``(achieved, peak)`` in TFLOP/s."""

    def __init__(self, config: Any):
        self.config = config
        if getattr(config, "model_type", None) not in DENSE_MODEL_TYPES | MOE_MODEL_TYPES:
            logger.warning("FlopsCounter counts the model types %s; %r is reported as 0 FLOP/s",
                           sorted(DENSE_MODEL_TYPES | MOE_MODEL_TYPES), getattr(config, "model_type", None))

    def _dense_flops(self, batch_seqlens: list[int]) -> float:
        c = self.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        q = c.num_attention_heads * head_dim
        kv = c.num_key_value_heads * head_dim
        if c.model_type in MOE_MODEL_TYPES:  # the active experts' gate/up/down, plus the router
            mlp = 3 * c.hidden_size * c.moe_intermediate_size * c.num_experts_per_tok + c.hidden_size * c.num_experts
        else:
            mlp = 3 * c.hidden_size * c.intermediate_size  # gate, up, down
        per_layer = c.hidden_size * (2 * q + 2 * kv) + mlp  # q and o, k and v projections
        linear_params = per_layer * c.num_hidden_layers + 2 * c.vocab_size * c.hidden_size  # + embedding and LM head
        tokens = sum(batch_seqlens)
        attention = sum(s * s for s in batch_seqlens) * q * c.num_hidden_layers  # QK^T and AV, causal-unmasked count
        return 6.0 * (linear_params * tokens + attention)

    def estimate_flops(self, batch_seqlens: list[int], delta_time: float, **kwargs: Any) -> tuple[float, float]:
        """Achieved TFLOP/s of one training step over sequences of ``batch_seqlens`` tokens taking ``delta_time``
        seconds, and the device's peak TFLOP/s (:func:`get_device_flops`)."""
        if getattr(self.config, "model_type", None) in DENSE_MODEL_TYPES | MOE_MODEL_TYPES:
            achieved = self._dense_flops(list(batch_seqlens)) / delta_time / 1e12
        else:
            achieved = 0.0
        return achieved, get_device_flops()
