"""Tiny random Llama-family checkpoints for tests and the ``--tiny`` benchmarks (built offline, no download).

``transformers`` is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["TINY_MODEL_TYPES", "tiny_config", "tiny_model"]

TINY_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def tiny_config(model_type: str = "qwen2", **overrides: Any):
    """A transformers config of ``model_type`` with a tiny shape (hidden 64, 2 layers, GQA 4/2 heads, vocab 256).

    ``overrides`` replace any config attribute (e.g. ``tie_word_embeddings=False``, ``rope_scaling={...}``).
    """
    from transformers import AutoConfig

    if model_type not in TINY_MODEL_TYPES:
        raise ValueError(f"tiny_config supports {list(TINY_MODEL_TYPES)}, got {model_type!r}")
    shape: dict[str, Any] = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=model_type in ("qwen2", "qwen3"), bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    if model_type == "qwen3":
        shape["head_dim"] = 32  # Qwen3 sets head_dim explicitly (here != hidden / heads)
    shape.update(overrides)
    return AutoConfig.for_model(model_type, **shape)


def tiny_model(model_type: str = "qwen2", seed: int = 0, dtype: torch.dtype = torch.float32, **overrides: Any):
    """A randomly initialised ``*ForCausalLM`` for :func:`tiny_config` (eval mode, sdpa attention).

    Weights are drawn with a larger std than HF's default init so the logits are far from uniform and greedy
    decoding is not decided by float noise.
    """
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, **overrides)
    config.initializer_range = 0.2
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()
