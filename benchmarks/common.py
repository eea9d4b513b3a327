"""Shared pieces of the fixed benchmark workloads (DESIGN.md section 8).

Model: the Qwen2.5-0.5B shape (vocab 151936, hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, tied
embeddings) with random weights; ``tiny=True`` gives a CPU-sized model of the same family so the scripts run in
the test suite. Every benchmark prints one JSON line per measurement with :func:`emit`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import torch

from verl.protocol import DataProto
from verl.utils.device import get_device, synchronize

__all__ = ["QWEN25_05B_SHAPE", "TINY_SHAPE", "build_model", "describe_device", "emit", "random_prompts", "Timer"]

QWEN25_05B_SHAPE: dict[str, Any] = dict(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
    num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=32768, rope_theta=1000000.0,
    rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151643, pad_token_id=151643,
)
# head_dim 32: the smallest vLLM's CPU attention accepts, so every rollout backend runs the tiny variant
TINY_SHAPE: dict[str, Any] = dict(
    vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=1024, rope_theta=1000000.0,
    rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)


def build_model(tiny: bool, dtype: torch.dtype, device: torch.device | None = None, seed: int = 0):
    """A randomly initialised ``Qwen2ForCausalLM`` of the benchmark shape (or the tiny one), in eval mode."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**(TINY_SHAPE if tiny else QWEN25_05B_SHAPE))
    device = device or get_device()
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: seconds instead of a minute for 0.5B on CPU
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def random_prompts(num_prompts: int, prompt_length: int, vocab_size: int, seed: int = 0) -> DataProto:
    """``num_prompts`` full-length prompts (no padding) of random token ids ``>= 3`` (clear of special ids)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (num_prompts, prompt_length), generator=g)
    mask = torch.ones_like(ids)
    positions = torch.arange(prompt_length).expand(num_prompts, -1).clone()
    return DataProto.from_dict({"input_ids": ids, "attention_mask": mask, "position_ids": positions})


def describe_device(device: torch.device) -> str:
    if device.type == "cpu":
        return f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    return torch.cuda.get_device_name(device)


class Timer:
    """Wall-clock seconds of a block, with the device synchronised at both ends."""

    def __enter__(self) -> Timer:
        synchronize()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        synchronize()
        self.seconds = time.perf_counter() - self.start


def emit(record: dict[str, Any]) -> None:
    """Print one benchmark result as a single JSON line (flushed, so pipes see it at once)."""
    print(json.dumps(record, sort_keys=False), flush=True)
