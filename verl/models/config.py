"""The shape of a Llama-family decoder, read from a transformers config without importing transformers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from verl.models.rope import SUPPORTED_ROPE_TYPES, RopeConfig

__all__ = ["DecoderConfig", "SUPPORTED_MODEL_TYPES", "UnsupportedModelError"]

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
SUPPORTED_ACTIVATIONS = ("silu", "gelu", "gelu_pytorch_tanh", "relu")


class UnsupportedModelError(ValueError):
    """The checkpoint is outside what the native decoder implements (the rollout then falls back to ``hf``)."""


@dataclass(frozen=True)
class DecoderConfig:
    """Everything the native decoder needs to know about a checkpoint."""

    model_type: str
    """HF ``model_type``: one of :data:`SUPPORTED_MODEL_TYPES`."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    """Query heads."""
    num_kv_heads: int
    """Key/value heads (< ``num_heads`` for grouped-query attention)."""
    head_dim: int
    rms_norm_eps: float
    rope: RopeConfig
    tie_word_embeddings: bool
    """The output projection is the input embedding (no ``lm_head.weight`` in the checkpoint)."""
    qkv_bias: bool
    """q/k/v projections carry a bias (Qwen2, or ``attention_bias`` in Llama/Qwen3)."""
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool
    """RMSNorm over each head's q and k before RoPE (Qwen3)."""
    hidden_act: str
    sliding_windows: tuple[int | None, ...]
    """Per layer: attend only to the last ``w`` positions (``None`` = full causal attention)."""
    max_position_embeddings: int

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @classmethod
    def from_hf(cls, hf_config: Any) -> DecoderConfig:
        """Read a ``LlamaConfig`` / ``Qwen2Config`` / ``Qwen3Config`` / ``MistralConfig`` (or any object with the
        same attributes). Raises :class:`UnsupportedModelError` naming what is not supported."""
        model_type = getattr(hf_config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"model_type {model_type!r} is not implemented by the native engine (supported: "
                f"{list(SUPPORTED_MODEL_TYPES)})"
            )
        num_heads = hf_config.num_attention_heads
        head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // num_heads
        if getattr(hf_config, "partial_rotary_factor", 1.0) != 1.0:
            raise UnsupportedModelError("partial_rotary_factor != 1 is not implemented by the native engine")
        act = getattr(hf_config, "hidden_act", "silu")
        if act not in SUPPORTED_ACTIVATIONS:
            raise UnsupportedModelError(f"hidden_act {act!r} is not one of {list(SUPPORTED_ACTIVATIONS)}")
        attention_bias = bool(getattr(hf_config, "attention_bias", False))
        return cls(
            model_type=model_type,
            vocab_size=hf_config.vocab_size,
            hidden_size=hf_config.hidden_size,
            intermediate_size=hf_config.intermediate_size,
            num_layers=hf_config.num_hidden_layers,
            num_heads=num_heads,
            num_kv_heads=getattr(hf_config, "num_key_value_heads", None) or num_heads,
            head_dim=head_dim,
            rms_norm_eps=hf_config.rms_norm_eps,
            rope=_rope_config(hf_config, head_dim),
            tie_word_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
            qkv_bias=True if model_type == "qwen2" else attention_bias,
            o_bias=False if model_type == "qwen2" else attention_bias,
            mlp_bias=bool(getattr(hf_config, "mlp_bias", False)),
            qk_norm=model_type == "qwen3",
            hidden_act=act,
            sliding_windows=_sliding_windows(hf_config, model_type),
            max_position_embeddings=hf_config.max_position_embeddings,
        )


def _rope_settings(hf_config: Any) -> tuple[float, dict[str, Any]]:
    """``(theta, scaling)`` from a transformers 5 ``rope_parameters`` dict or the older ``rope_theta`` /
    ``rope_scaling`` attributes (both read, ``rope_parameters`` first), so a checkpoint written by either line
    decodes with its real base frequency instead of silently falling back to 10000."""
    params = getattr(hf_config, "rope_parameters", None)
    params = dict(params) if isinstance(params, Mapping) else {}
    if params and all(isinstance(v, Mapping) for v in params.values()):
        # per-layer-type parameters ({"full_attention": {...}, "sliding_attention": {...}})
        kinds = {repr(sorted(dict(v).items())) for v in params.values()}
        if len(kinds) > 1:
            raise UnsupportedModelError(
                f"per-layer-type rope_parameters {sorted(params)} differ; the native engine uses one RoPE per model")
        params = dict(next(iter(params.values())))
    legacy = dict(getattr(hf_config, "rope_scaling", None) or {})
    scaling = {**legacy, **params}
    theta = scaling.pop("rope_theta", None)
    if theta is None:
        theta = getattr(hf_config, "rope_theta", None)
    return float(theta if theta is not None else 10000.0), scaling


def _rope_config(hf_config: Any, head_dim: int) -> RopeConfig:
    theta, scaling = _rope_settings(hf_config)
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if float(scaling.get("partial_rotary_factor", 1.0)) != 1.0:
        raise UnsupportedModelError("partial_rotary_factor != 1 is not implemented by the native engine")
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedModelError(
            f"rope_scaling type {rope_type!r} is not implemented by the native engine (supported: "
            f"{list(SUPPORTED_ROPE_TYPES)})"
        )
    return RopeConfig(
        head_dim=head_dim,
        theta=theta,
        rope_type=rope_type,
        scaling=scaling,
        max_position_embeddings=hf_config.max_position_embeddings,
    )


def _sliding_windows(hf_config: Any, model_type: str) -> tuple[int | None, ...]:
    n = hf_config.num_hidden_layers
    window = getattr(hf_config, "sliding_window", None)
    if model_type == "mistral":
        return (window,) * n
    layer_types = getattr(hf_config, "layer_types", None)
    if model_type in ("qwen2", "qwen3") and layer_types:
        return tuple(window if t == "sliding_attention" else None for t in layer_types)
    return (None,) * n
