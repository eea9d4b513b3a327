"""The critic's clipped value loss."""

from __future__ import annotations

import torch

from verl.trainer.ppo.core_algos.aggregation import Count, agg_loss
from verl.trainer.ppo.core_algos.masked import masked_mean

__all__ = ["compute_value_loss"]


def compute_value_loss(
    vpreds: torch.Tensor,
    returns: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    cliprange_value: float,
    loss_agg_mode: str = "token-mean",
    dp_size: int = 1,
    batch_num_tokens: Count | None = None,
    global_batch_size: Count | None = None,
    loss_scale_factor: float | None = None,
    *,
    global_num_tokens: Count | None = None,
    global_num_seqs: Count | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss (Schulman et al. 2017, arXiv:1707.06347; as in OpenAI baselines' ppo2).

    ``v_clip = clip(vpreds, values - eps_v, values + eps_v)``;
    ``L = 0.5 * agg(max((vpreds - R)^2, (v_clip - R)^2))``: the critic may not move a prediction more
    than ``eps_v`` from the value it had at rollout unless that makes the error smaller.

    Args:
        vpreds: ``(B, T)`` the critic's current predictions (with gradient).
        returns: ``(B, T)`` targets ``R`` from the advantage estimator.
        values: ``(B, T)`` the critic's predictions at rollout time.
        response_mask: ``(B, T)``.
        cliprange_value: ``eps_v`` (config key ``critic.cliprange_value``).
        loss_agg_mode, dp_size, batch_num_tokens, global_batch_size, loss_scale_factor, global_num_tokens,
            global_num_seqs: see :func:`agg_loss` (verl's argument order).

    Returns:
        ``(vf_loss, vf_clipfrac)``: the loss and the fraction of tokens where the clipped error is used.
    """
    shapes = {k: tuple(v.shape) for k, v in dict(vpreds=vpreds, returns=returns, values=values).items()}
    if len(set(shapes.values()) | {tuple(response_mask.shape)}) != 1:
        raise ValueError(f"value loss inputs must share response_mask's shape {tuple(response_mask.shape)}, got {shapes}")
    vpred_clipped = torch.clamp(vpreds, values - cliprange_value, values + cliprange_value)
    err = (vpreds - returns) ** 2  # (B, T)
    err_clipped = (vpred_clipped - returns) ** 2
    vf_losses = torch.maximum(err, err_clipped)
    vf_loss = 0.5 * agg_loss(
        vf_losses,
        response_mask,
        loss_agg_mode,
        dp_size,
        batch_num_tokens,
        global_batch_size,
        loss_scale_factor,
        global_num_tokens=global_num_tokens,
        global_num_seqs=global_num_seqs,
    )
    vf_clipfrac = masked_mean((err_clipped > err).float(), response_mask)
    return vf_loss, vf_clipfrac
