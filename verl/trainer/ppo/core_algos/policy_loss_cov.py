"""Clip-Cov and KL-Cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models", arXiv:2505.22617).

Entropy collapses because tokens with a large covariance between their log-prob and their advantage
dominate the update. Both losses find those tokens per call (over its valid tokens) and restrain only a
small fraction of them: Clip-Cov drops their gradient, KL-Cov adds a KL penalty on them. Token selection
is done with a sort and a rank comparison on the device (no ``.item()``); Clip-Cov's random choice uses
torch's global RNG.
"""

from __future__ import annotations

import torch

from verl.trainer.ppo.core_algos.aggregation import Count
from verl.trainer.ppo.core_algos.masked import masked_mean
from verl.trainer.ppo.core_algos.policy_loss import (
    PolicyLossOutput,
    aggregate_pg,
    check_inputs,
    clamped_log_ratio,
    clip_bounds,
    register_policy_loss,
)

__all__ = ["compute_policy_loss_clip_cov", "compute_policy_loss_kl_cov", "select_top_fraction"]


def select_top_fraction(scores: torch.Tensor, eligible: torch.Tensor, num_valid: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mark the ``max(floor(fraction * num_valid), 1)`` eligible positions with the highest ``scores``.

    Args:
        scores: ``(B, T)`` ranking keys (higher = chosen first).
        eligible: ``(B, T)`` bool; only these can be chosen (fewer than ``k`` eligible: all of them).
        num_valid: 0-d tensor, the token count the fraction refers to.
        fraction: in ``[0, 1]``; 0 selects nothing.

    Returns:
        ``(B, T)`` bool mask of the chosen positions.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the covariance ratio must be in [0, 1], got {fraction}")
    if fraction == 0.0:
        return torch.zeros_like(eligible)
    keys = torch.where(eligible, scores, torch.full_like(scores, float("-inf"))).flatten()  # (B*T,)
    order = torch.argsort(keys, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    k = torch.floor(num_valid * fraction).clamp(min=1)
    return eligible & (rank.view_as(eligible) < k)


def _token_covariance(advantages: torch.Tensor, log_prob: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``(A - mean A) * (log_prob - mean log_prob)`` per token, means over valid tokens, detached ``(B, T)``."""
    adv = advantages.detach()
    logp = log_prob.detach()
    return (adv - masked_mean(adv, response_mask)) * (logp - masked_mean(logp, response_mask))


@register_policy_loss("clip_cov")
def compute_policy_loss_clip_cov(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    cliprange: float = 0.2,
    cliprange_low: float | None = None,
    cliprange_high: float | None = None,
    clip_ratio_c: float = 3.0,
    loss_agg_mode: str = "token-mean",
    *,
    clip_cov_ratio: float = 0.0002,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    kl_cov_ratio: float = 0.0002,
    ppo_kl_coef: float = 1.0,
    rollout_is_weights: torch.Tensor | None = None,
    global_num_tokens: Count | None = None,
    global_num_seqs: Count | None = None,
    loss_scale_factor: float | None = None,
) -> PolicyLossOutput:
    """Clip-Cov: the PPO clipped surrogate, with the gradient of a few high-covariance tokens removed.

    Among valid tokens that the PPO clip did not already clip and whose covariance
    ``(A - mean A)(log_prob - mean log_prob)`` lies in ``(clip_cov_lb, clip_cov_ub)``, pick
    ``max(floor(clip_cov_ratio * N_valid), 1)`` at random and zero their loss (config keys
    ``actor.policy_loss.clip_cov_ratio``, ``clip_cov_lb``, ``clip_cov_ub``). No dual-clip.

    Returns:
        ``(pg_loss, pg_clipfrac, ppo_kl, 0)`` with ``pg_clipfrac`` the fraction of tokens Clip-Cov removed.
    """
    check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, cliprange)
    low, high = clip_bounds(cliprange, cliprange_low, cliprange_high)
    valid = response_mask != 0
    log_ratio = clamped_log_ratio(log_prob, old_log_prob)
    ratio = torch.exp(log_ratio)
    ppo_kl = masked_mean(-log_ratio.detach(), response_mask)
    surr = -advantages * ratio
    surr_clipped = -advantages * torch.clamp(ratio, 1.0 - low, 1.0 + high)
    clipped_by_ppo = (surr_clipped > surr).detach()

    cov = _token_covariance(advantages, log_prob, response_mask)
    eligible = valid & ~clipped_by_ppo & (cov > clip_cov_lb) & (cov < clip_cov_ub)
    random_keys = torch.rand(cov.shape, device=cov.device)
    removed = select_top_fraction(random_keys, eligible, valid.sum(), clip_cov_ratio)
    pg_losses = torch.where(removed, torch.zeros_like(surr), torch.maximum(surr, surr_clipped))
    pg_clipfrac = masked_mean(removed.float(), response_mask)
    pg_loss = aggregate_pg(
        pg_losses, response_mask, loss_agg_mode, rollout_is_weights, global_num_tokens, global_num_seqs,
        loss_scale_factor,
    )  # fmt: skip
    return pg_loss, pg_clipfrac, ppo_kl, log_prob.new_zeros(())


@register_policy_loss("kl_cov")
def compute_policy_loss_kl_cov(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    cliprange: float = 0.2,
    cliprange_low: float | None = None,
    cliprange_high: float | None = None,
    clip_ratio_c: float = 3.0,
    loss_agg_mode: str = "token-mean",
    *,
    clip_cov_ratio: float = 0.0002,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    kl_cov_ratio: float = 0.0002,
    ppo_kl_coef: float = 1.0,
    rollout_is_weights: torch.Tensor | None = None,
    global_num_tokens: Count | None = None,
    global_num_seqs: Count | None = None,
    loss_scale_factor: float | None = None,
) -> PolicyLossOutput:
    """KL-Cov: the unclipped surrogate ``-A r``, plus ``ppo_kl_coef * |log r|`` on the top-covariance tokens.

    The ``max(floor(kl_cov_ratio * N_valid), 1)`` valid tokens with the largest covariance
    ``(A - mean A)(log_prob - mean log_prob)`` get the KL penalty (config keys
    ``actor.policy_loss.kl_cov_ratio``, ``ppo_kl_coef``); ``kl_cov_ratio=0`` penalises none. No clipping.

    Returns:
        ``(pg_loss, pg_clipfrac, ppo_kl, 0)`` with ``pg_clipfrac`` the fraction of penalised tokens.
    """
    check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, cliprange)
    valid = response_mask != 0
    log_ratio = clamped_log_ratio(log_prob, old_log_prob)
    ratio = torch.exp(log_ratio)
    ppo_kl = masked_mean(-log_ratio.detach(), response_mask)
    surr = -advantages * ratio
    cov = _token_covariance(advantages, log_prob, response_mask)
    penalised = select_top_fraction(cov, valid, valid.sum(), kl_cov_ratio)
    pg_losses = torch.where(penalised, surr + ppo_kl_coef * log_ratio.abs(), surr)
    pg_clipfrac = masked_mean(penalised.float(), response_mask)
    pg_loss = aggregate_pg(
        pg_losses, response_mask, loss_agg_mode, rollout_is_weights, global_num_tokens, global_num_seqs,
        loss_scale_factor,
    )  # fmt: skip
    return pg_loss, pg_clipfrac, ppo_kl, log_prob.new_zeros(())
