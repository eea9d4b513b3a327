"""verl's ``verl.utils.torch_functional`` (imported as ``verl_F``). Thin re-exports of the masked statistics and
entropy in :mod:`verl.trainer.ppo.core_algos`, plus verl's ``clip_by_value``."""

from __future__ import annotations

import torch

from verl.trainer.ppo.core_algos.entropy import entropy_from_logits
from verl.trainer.ppo.core_algos.masked import masked_mean, masked_sum, masked_var, masked_whiten

__all__ = ["clip_by_value", "entropy_from_logits", "masked_mean", "masked_sum", "masked_var", "masked_whiten"]


def clip_by_value(x: torch.Tensor, tensor_min: torch.Tensor, tensor_max: torch.Tensor) -> torch.Tensor:
    """``x`` clamped elementwise between two tensors (verl's helper; ``torch.clamp`` with tensor bounds)."""
    return torch.max(torch.min(x, tensor_max), tensor_min)
