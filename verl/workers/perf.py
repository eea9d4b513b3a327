"""Throughput metrics of the training workers: tokens/s, model FLOPs utilisation, peak memory."""

from __future__ import annotations

import torch
from torch import nn

from verl.protocol import DataProto
from verl.utils.flops_counter import device_peak_flops

__all__ = ["actor_perf_metrics", "peak_flops"]

def peak_flops() -> float | None:
    """The accelerator's bf16 peak, or None where unknown (CPU)."""
    return device_peak_flops()


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # DTensor.numel() is the global size


def actor_perf_metrics(model: nn.Module, data: DataProto, seconds: float, epochs: int,
                       prefix: str = "actor") -> dict[str, float]:
    """``perf/mfu/<prefix>`` (6 x params x tokens per second over the peak; accelerators only),
    ``perf/<prefix>_tokens_per_s`` (this rank) and ``perf/max_memory_allocated_gb``."""
    tokens = float(data.batch["attention_mask"].sum()) * epochs
    out = {f"perf/{prefix}_tokens_per_s": tokens / max(seconds, 1e-9)}
    peak = peak_flops()
    if peak is not None:
        out[f"perf/mfu/{prefix}"] = 6.0 * num_params(model) * tokens / max(seconds, 1e-9) / peak
        out["perf/max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out
