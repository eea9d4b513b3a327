"""Throughput metrics of the training workers: tokens/s, model FLOPs utilisation, peak memory."""

from __future__ import annotations

import torch
from torch import nn

from verl.protocol import DataProto

__all__ = ["actor_perf_metrics", "peak_flops"]

# Dense bf16 tensor-core peaks (FLOP/s) by device-name fragment.
_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12,
              "MI300X": 1307e12, "MI250": 362e12}


def peak_flops() -> float | None:
    """The accelerator's bf16 peak, or None where unknown (CPU)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in _PEAK_BF16.items() if k in name), None)


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
