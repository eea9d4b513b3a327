"""Reward shaping applied to outcome scores before advantages are computed."""

from __future__ import annotations

import torch

__all__ = ["apply_overlong_penalty", "compute_overlong_penalty"]


def compute_overlong_penalty(
    response_length: torch.Tensor,
    max_response_length: int,
    overlong_buffer_len: int,
    penalty_factor: float = 1.0,
) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, arXiv:2503.14476, eq. 13).

    With ``L_max = max_response_length`` and ``L_cache = overlong_buffer_len``::

        R(|y|) = 0                                          if |y| <= L_max - L_cache
               = ((L_max - L_cache) - |y|) / L_cache * f    if L_max - L_cache < |y| <= L_max
               = -f                                         if |y| > L_max

    a penalty growing linearly over the last ``L_cache`` tokens of the budget (``f = penalty_factor``).
    Config keys as in verl's DAPO recipe: ``reward_model.overlong_buffer.len`` and ``.penalty_factor``.

    Args:
        response_length: ``(B,)`` number of response tokens of each sample.

    Returns:
        ``(B,)`` float penalties, ``<= 0``.
    """
    if not 0 < overlong_buffer_len <= max_response_length:
        raise ValueError(
            f"overlong_buffer_len must be in (0, max_response_length={max_response_length}], got {overlong_buffer_len}"
        )
    if penalty_factor < 0:
        raise ValueError(f"penalty_factor must be >= 0, got {penalty_factor}")
    expected = max_response_length - overlong_buffer_len
    excess = response_length.to(torch.float32) - expected  # (B,)
    return torch.clamp(-excess / overlong_buffer_len * penalty_factor, min=-penalty_factor, max=0.0)


def apply_overlong_penalty(
    token_level_scores: torch.Tensor,
    response_mask: torch.Tensor,
    max_response_length: int,
    overlong_buffer_len: int,
    penalty_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add :func:`compute_overlong_penalty` to each response's last valid token.

    The response length is the number of valid tokens in ``response_mask``. Rows without valid tokens are
    left unchanged.

    Args:
        token_level_scores: ``(B, T)``, outcome reward on the last valid token.
        response_mask: ``(B, T)``.

    Returns:
        ``(shaped_scores, penalty)``: ``(B, T)`` new scores (the input is not modified) and ``(B,)``.
    """
    if token_level_scores.shape != response_mask.shape:
        raise ValueError(
            f"token_level_scores {tuple(token_level_scores.shape)} and response_mask {tuple(response_mask.shape)} differ"
        )
    valid = response_mask != 0
    length = valid.sum(dim=-1)  # (B,)
    penalty = compute_overlong_penalty(length, max_response_length, overlong_buffer_len, penalty_factor)
    positions = torch.arange(valid.shape[-1], device=valid.device).expand_as(valid)
    last = torch.where(valid, positions, -1).amax(dim=-1)  # (B,) -1 when empty
    at_last = positions == last.unsqueeze(-1)  # (B, T)
    shaped = token_level_scores + at_last.to(token_level_scores.dtype) * penalty.to(token_level_scores.dtype).unsqueeze(-1)
    return shaped, penalty
