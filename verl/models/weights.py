"""HF parameter names -> the native decoder's (possibly fused) weight slots.

The decoder keeps q/k/v and gate/up projections fused (one matmul each, fewer kernels per decode step), so an HF
name maps to a field and, for fused fields, a row range of it. Everything else maps to a whole tensor, which the
decoder may share with the source model instead of copying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verl.models.config import DecoderConfig

__all__ = ["WeightSlot", "LAYER_FIELDS", "GLOBAL_FIELDS", "FUSED_FIELDS", "map_hf_name", "required_slots"]

# wrapper prefixes that FSDP / torch.compile / DDP put in front of a module's state-dict names
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_orig_mod.", "module.", "_checkpoint_wrapped_module.")
_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
_LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

LAYER_FIELDS = (
    "input_norm", "qkv_weight", "qkv_bias", "q_norm", "k_norm", "o_weight", "o_bias",
    "post_norm", "gate_up_weight", "gate_up_bias", "down_weight", "down_bias",
)
GLOBAL_FIELDS = ("embed", "norm", "lm_head")
FUSED_FIELDS = ("qkv_weight", "qkv_bias", "gate_up_weight", "gate_up_bias")


@dataclass(frozen=True)
class WeightSlot:
    """Where one HF tensor goes: ``layer`` (None for global fields), ``field`` and a row range for fused fields."""

    layer: int | None
    field: str
    start: int | None = None
    stop: int | None = None

    @property
    def fused(self) -> bool:
        return self.start is not None


def _layer_suffixes(cfg: DecoderConfig) -> dict[str, tuple[str, int | None, int | None]]:
    q, kv, inter = cfg.q_size, cfg.kv_size, cfg.intermediate_size
    table: dict[str, tuple[str, int | None, int | None]] = {
        "input_layernorm.weight": ("input_norm", None, None),
        "post_attention_layernorm.weight": ("post_norm", None, None),
        "self_attn.o_proj.weight": ("o_weight", None, None),
        "mlp.down_proj.weight": ("down_weight", None, None),
    }
    for kind in ("weight", "bias"):
        table[f"self_attn.q_proj.{kind}"] = (f"qkv_{kind}", 0, q)
        table[f"self_attn.k_proj.{kind}"] = (f"qkv_{kind}", q, q + kv)
        table[f"self_attn.v_proj.{kind}"] = (f"qkv_{kind}", q + kv, q + 2 * kv)
        table[f"mlp.gate_proj.{kind}"] = (f"gate_up_{kind}", 0, inter)
        table[f"mlp.up_proj.{kind}"] = (f"gate_up_{kind}", inter, 2 * inter)
    table["self_attn.o_proj.bias"] = ("o_bias", None, None)
    table["mlp.down_proj.bias"] = ("down_bias", None, None)
    table["self_attn.q_norm.weight"] = ("q_norm", None, None)
    table["self_attn.k_norm.weight"] = ("k_norm", None, None)
    return table


def strip_wrappers(name: str) -> str:
    """Drop FSDP/compile/DDP wrapper prefixes wherever they appear in a dotted name."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def map_hf_name(cfg: DecoderConfig, name: str) -> WeightSlot | None:
    """The slot of an HF ``*ForCausalLM`` state-dict name; ``None`` for buffers the decoder recomputes.

    Raises ``KeyError`` (listing the expected form) for a name that is not part of this architecture.
    """
    name = strip_wrappers(name)
    if _IGNORED.search(name):
        return None
    globals_ = {"model.embed_tokens.weight": "embed", "model.norm.weight": "norm", "lm_head.weight": "lm_head"}
    if name in globals_:
        return WeightSlot(None, globals_[name])
    match = _LAYER_NAME.match(name)
    if match:
        layer, suffix = int(match.group(1)), match.group(2)
        entry = _layer_suffixes(cfg).get(suffix)
        if entry is not None and layer < cfg.num_layers:
            field, start, stop = entry
            return WeightSlot(layer, field, start, stop)
    raise KeyError(
        f"{name!r} is not a weight of this {cfg.model_type} decoder ({cfg.num_layers} layers); expected HF "
        "*ForCausalLM names such as 'model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', "
        "'lm_head.weight'"
    )


def required_slots(cfg: DecoderConfig) -> dict[tuple[int | None, str], list[str]]:
    """Every ``(layer, field)`` the decoder needs, with the HF names that together fill it."""
    needed: dict[tuple[int | None, str], list[str]] = {
        (None, "embed"): ["model.embed_tokens.weight"],
        (None, "norm"): ["model.norm.weight"],
    }
    if not cfg.tie_word_embeddings:
        needed[(None, "lm_head")] = ["lm_head.weight"]
    optional = {
        "qkv_bias": cfg.qkv_bias, "o_bias": cfg.o_bias, "gate_up_bias": cfg.mlp_bias, "down_bias": cfg.mlp_bias,
        "q_norm": cfg.qk_norm, "k_norm": cfg.qk_norm,
    }
    for suffix, (field, _, _) in _layer_suffixes(cfg).items():
        if not optional.get(field, True):
            continue
        for layer in range(cfg.num_layers):
            needed.setdefault((layer, field), []).append(f"model.layers.{layer}.{suffix}")
    return needed
