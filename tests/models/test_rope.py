"""RoPE frequencies and scalings match transformers' reference implementations."""

import math

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from verl.models import DecoderConfig, UnsupportedModelError
from verl.models.rope import RopeConfig, apply_rope, rope_inv_freq, rope_table
from verl.models.testing import tiny_config

SCALINGS = [
    None,
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 128},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128},
    {"rope_type": "yarn", "factor": 8.0, "beta_fast": 16, "beta_slow": 2, "mscale": 0.7, "mscale_all_dim": 0.5,
     "truncate": False},
    {"type": "linear", "factor": 2.0},  # the legacy key
]


@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: "default" if s is None else s.get("rope_type", "legacy"))
def test_inv_freq_and_attention_factor_match_transformers(scaling):
    hf = tiny_config("llama", rope_scaling=dict(scaling) if scaling else None, rope_theta=50000.0, hidden_size=128, num_attention_heads=2)
    reference = LlamaRotaryEmbedding(hf)  # transformers' own module: its inverse frequencies and cos/sin factor
    want_freq, want_factor = reference.inv_freq, reference.attention_scaling
    ours = DecoderConfig.from_hf(hf).rope
    freq, factor = rope_inv_freq(ours)
    assert ours.head_dim == 64 and freq.shape == (32,)
    torch.testing.assert_close(freq, want_freq.float(), rtol=0, atol=0)
    assert factor == pytest.approx(want_factor, rel=1e-12)


def test_table_and_rotation_are_a_rotation():
    cfg = RopeConfig(head_dim=8, theta=100.0)
    cos, sin = rope_table(cfg, 16)
    assert cos.shape == sin.shape == (16, 8)
    torch.testing.assert_close(cos[0], torch.ones(8))  # position 0: identity
    x = torch.randn(16, 3, 8)
    y = apply_rope(x, cos[:, None], sin[:, None])
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))  # rotations keep norms
    # the first frequency is 1: position p rotates the (0, 4) pair by p radians
    p = 5
    angle = math.atan2(y[p, 0, 4], y[p, 0, 0]) - math.atan2(x[p, 0, 4], x[p, 0, 0])
    assert math.remainder(angle - p, 2 * math.pi) == pytest.approx(0.0, abs=1e-5)


def test_unsupported_rope_type_is_named():
    hf = tiny_config("llama", rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    with pytest.raises(UnsupportedModelError, match="dynamic"):
        DecoderConfig.from_hf(hf)


def test_theta_and_scaling_are_read_from_rope_parameters_and_the_old_attributes():
    """transformers 5 keeps theta in ``rope_parameters``; a config spelled the 4.x way still reads the same."""
    from types import SimpleNamespace

    v5 = tiny_config("qwen2", rope_theta=1e6)
    assert DecoderConfig.from_hf(v5).rope.theta == 1e6
    scaled = DecoderConfig.from_hf(tiny_config("llama", rope_theta=5e5, rope_scaling=dict(SCALINGS[2]))).rope
    assert (scaled.theta, scaled.rope_type, scaled.scaling["factor"]) == (5e5, "llama3", 8.0)
    shape = dict(model_type="llama", vocab_size=8, hidden_size=64, intermediate_size=8, num_hidden_layers=1,
                 num_attention_heads=2, rms_norm_eps=1e-6, max_position_embeddings=64)
    old = SimpleNamespace(**shape, rope_theta=2e5, rope_scaling={"type": "linear", "factor": 2.0})
    assert (DecoderConfig.from_hf(old).rope.theta, DecoderConfig.from_hf(old).rope.rope_type) == (2e5, "linear")
    per_layer = SimpleNamespace(**shape, rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 3e5},
                                                          "sliding_attention": {"rope_type": "default", "rope_theta": 3e5}})
    assert DecoderConfig.from_hf(per_layer).rope.theta == 3e5
    per_layer.rope_parameters["sliding_attention"] = {"rope_type": "default", "rope_theta": 1e4}
    with pytest.raises(UnsupportedModelError, match="per-layer-type"):
        DecoderConfig.from_hf(per_layer)
