"""Correcting for the rollout engine's log-probs differing from the trainer's (DESIGN.md section 5).

The rollout engine (different kernels, precision, or a stale weight copy) samples from ``pi_rollout``
while PPO's ``old_log_prob`` is recomputed by the trainer. Truncated importance sampling (TIS) reweights
each token's policy-gradient loss by ``min(pi_old / pi_rollout, C)`` (Yao et al. 2025, "Your Efficient RL
Framework Secretly Brings You Off-Policy RL Training"; truncation as in IMPALA's V-trace, Espeholt et al.
2018, arXiv:1802.01561). Pass the weights as ``rollout_is_weights`` to any policy loss.
"""

from __future__ import annotations

import torch

from verl.trainer.ppo.core_algos.masked import masked_mean

__all__ = ["compute_tis_weights"]


def compute_tis_weights(
    old_log_prob: torch.Tensor,
    rollout_log_probs: torch.Tensor,
    response_mask: torch.Tensor,
    cap: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Truncated importance weights ``w = min(exp(old_log_prob - rollout_log_probs), C)``.

    Args:
        old_log_prob: ``(B, T)`` trainer log-probs of the sampled tokens.
        rollout_log_probs: ``(B, T)`` the rollout engine's log-probs of the same tokens.
        response_mask: ``(B, T)``; weights are 0 where it is 0.
        cap: ``C > 0`` (verl's config key ``actor_rollout_ref.actor.tis_imp_ratio_cap``).

    Returns:
        ``(weights, metrics)``: detached ``(B, T)`` weights and 0-d metric tensors ``tis/weight_mean``,
        ``tis/capped_frac`` (tokens whose weight hit ``C``) and ``tis/rollout_kl`` (the k3 estimate of
        ``KL(pi_rollout || pi_old)``, which measures the mismatch).
    """
    if cap <= 0:
        raise ValueError(f"the truncated-IS cap must be > 0, got {cap}")
    if not old_log_prob.shape == rollout_log_probs.shape == response_mask.shape:
        raise ValueError(
            f"shapes differ: old_log_prob {tuple(old_log_prob.shape)}, rollout_log_probs "
            f"{tuple(rollout_log_probs.shape)}, response_mask {tuple(response_mask.shape)}"
        )
    with torch.no_grad():
        log_ratio = torch.clamp(old_log_prob - rollout_log_probs, min=-20.0, max=20.0)  # (B, T)
        ratio = torch.exp(log_ratio)
        weights = torch.clamp(ratio, max=cap) * response_mask.to(ratio.dtype)
        metrics = {
            "tis/weight_mean": masked_mean(weights, response_mask),
            "tis/capped_frac": masked_mean((ratio > cap).float(), response_mask),
            "tis/rollout_kl": masked_mean(ratio - log_ratio - 1.0, response_mask),
        }
    return weights, metrics
