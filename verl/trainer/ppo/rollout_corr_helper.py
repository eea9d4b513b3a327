"""Rollout correction (``algorithm.rollout_correction``): importance weights and rejection masks for the gap
between the policy that generated a batch (the rollout engine's, ``rollout_log_probs``) and the one the trainer
computes (``old_log_probs``, or the current policy in bypass mode).

Liu, Li et al. 2025, "When Speed Kills Stability: Demystifying RL Collapse from the Training-Inference
Mismatch". Pure tensor functions; ``log_ratio = log pi_train - log pi_rollout`` per response token.

- Importance sampling (``rollout_is``): ``token``: ``w_t = exp(log_ratio_t)``; ``sequence``: one weight
  ``exp(sum_t log_ratio_t)`` per response, on all its tokens. Log-ratios are clamped to [-20, 20] first; weights
  are truncated at ``rollout_is_threshold`` (truncated IS), optionally scaled to mean 1 over the batch, and zero
  on padding. They multiply the per-token policy loss.
- Rejection sampling (``rollout_rs``): per mode a statistic of ``r = exp(log_ratio)``; ``k1`` modes bound the
  ratio itself (token ``r_t``, ``seq_sum`` the product of ``r_t``, ``seq_mean`` their geometric mean) within
  ``[lower, upper]``; ``k2`` (``0.5 log(r)^2``) and ``k3`` (``r - 1 - log r``) modes bound a divergence from
  above (token: each token; ``seq_sum`` / ``seq_mean`` / ``seq_max`` over the response). Rejected tokens, or all
  tokens of a rejected response, leave the response mask.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["apply_rollout_correction", "bypass_reinforce_loss", "compute_is_weights", "compute_rollout_correction_and_rejection_mask",
           "compute_rs_keep_mask"]

LOG_RATIO_BOUND = 20.0


def _masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum(-1)


def compute_is_weights(log_ratio: torch.Tensor, mask: torch.Tensor, level: str, threshold: float,
                       batch_normalize: bool = False) -> torch.Tensor:
    """Truncated importance weights ``(B, R)`` (zero on padding) from ``log_ratio`` and ``mask`` ``(B, R)``."""
    mask = mask.to(log_ratio.dtype)
    if level == "token":
        weights = torch.exp(log_ratio.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)).clamp(max=threshold) * mask
        if batch_normalize:
            weights = weights / ((weights.sum() / mask.sum().clamp(min=1)).clamp(min=1e-8))
        return weights
    if level == "sequence":
        seq = torch.exp(_masked_sum(log_ratio, mask).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)).clamp(max=threshold)
        if batch_normalize:
            has_tokens = mask.sum(-1) > 0
            seq = seq / seq[has_tokens].mean().clamp(min=1e-8)
        return seq[:, None] * mask
    raise ValueError(f"rollout_is={level!r}: use token or sequence")


def _rs_statistic(mode: str, log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token ``(B, R)`` (token modes) or per-sequence ``(B,)`` statistic of one rejection mode."""
    level, _, kind = mode.rpartition("_")
    if kind == "k1":
        token = log_ratio  # bounds compare exp of this with [lower, upper]
    elif kind == "k2":
        token = 0.5 * log_ratio**2
    else:  # k3
        token = torch.exp(log_ratio.clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)) - 1 - log_ratio
    if level == "token":
        return token
    count = mask.sum(-1).clamp(min=1)
    if level == "seq_sum":
        return _masked_sum(token, mask)
    if level == "seq_mean":
        return _masked_sum(token, mask) / count
    return token.masked_fill(mask == 0, float("-inf")).max(-1).values  # seq_max


def compute_rs_keep_mask(log_ratio: torch.Tensor, mask: torch.Tensor,
                         modes: list[tuple[str, float | None, float]]) -> torch.Tensor:
    """``(B, R)`` 1/0 mask of the tokens kept by every rejection mode ``(mode, lower, upper)`` (zero on padding)."""
    mask = mask.to(log_ratio.dtype)
    keep = mask.clone()
    for mode, lower, upper in modes:
        stat = _rs_statistic(mode, log_ratio, mask)
        if mode.endswith("k1"):  # ratio bounds, compared in log space
            ok = (stat >= torch.log(torch.tensor(lower))) & (stat <= torch.log(torch.tensor(upper)))
        else:
            ok = stat <= upper
        ok = ok.to(log_ratio.dtype)
        keep = keep * (ok if ok.dim() == 2 else ok[:, None])
    return keep


def compute_rollout_correction_and_rejection_mask(
    log_prob: torch.Tensor, rollout_log_probs: torch.Tensor, response_mask: torch.Tensor, config: Any,
) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, torch.Tensor]]:
    """``(importance weights or None, response mask after rejection, metrics)`` for ``(B, R)`` log-probs of the
    training policy and the rollout; ``config`` is the ``algorithm.rollout_correction`` section."""
    from verl.trainer.config.features import parse_rs_thresholds

    mask = response_mask.to(log_prob.dtype)
    log_ratio = (log_prob - rollout_log_probs) * mask
    metrics: dict[str, torch.Tensor] = {}
    new_mask = response_mask
    if config.rollout_rs is not None:
        keep = compute_rs_keep_mask(log_ratio, mask, parse_rs_thresholds(config.rollout_rs, config.rollout_rs_threshold))
        metrics["rollout_corr/rollout_rs_masked_fraction"] = 1 - keep.sum() / mask.sum().clamp(min=1)
        seq_kept = (keep.sum(-1) > 0) | (mask.sum(-1) == 0)
        metrics["rollout_corr/rollout_rs_seq_masked_fraction"] = 1 - seq_kept.float().mean()
        new_mask = keep.to(response_mask.dtype)
    weights = None
    if config.rollout_is is not None:
        weights = compute_is_weights(log_ratio, new_mask.to(log_prob.dtype), config.rollout_is,
                                     config.rollout_is_threshold, config.rollout_is_batch_normalize)
        valid = new_mask.to(log_prob.dtype)
        metrics["rollout_corr/rollout_is_mean"] = weights.sum() / valid.sum().clamp(min=1)
        metrics["rollout_corr/rollout_is_max"] = weights.max()
    token_count = mask.sum().clamp(min=1)
    metrics["rollout_corr/log_ppl_diff"] = -log_ratio.sum() / token_count
    metrics["rollout_corr/kl"] = (torch.exp(-log_ratio) - 1 + log_ratio).mul(mask).sum() / token_count
    return weights, new_mask, metrics


def bypass_reinforce_loss(log_prob: torch.Tensor, rollout_log_probs: torch.Tensor, advantages: torch.Tensor,
                          response_mask: torch.Tensor, config: Any, loss_agg_mode: str,
                          **agg_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Bypass mode with ``loss_type=reinforce``: the policy gradient ``-A * w * log pi_theta`` with importance
    weights ``w`` of the current policy over the rollout (detached; truncated; 1 when ``rollout_is`` is off), no
    clipping. Returns ``(loss, the response mask after rejection)``."""
    from verl.trainer.ppo.core_algos import agg_loss

    weights, mask, _ = compute_rollout_correction_and_rejection_mask(
        log_prob.detach(), rollout_log_probs, response_mask, config)
    if weights is None:
        weights = mask.to(log_prob.dtype)
    pg_losses = -advantages * weights * log_prob
    return agg_loss(pg_losses, mask, loss_agg_mode, **agg_kwargs), mask


def apply_rollout_correction(batch: Any, config: Any) -> dict[str, float]:
    """Decoupled mode on the driver: ``batch.batch`` gets ``rollout_is_weights`` (when ``rollout_is`` is set) and
    its ``response_mask`` loses rejected tokens; returns the ``rollout_corr/*`` metrics."""
    b = batch.batch
    weights, mask, metrics = compute_rollout_correction_and_rejection_mask(
        b["old_log_probs"], b["rollout_log_probs"], b["response_mask"], config)
    b["response_mask"] = mask.to(b["response_mask"].dtype)
    if weights is not None:
        b["rollout_is_weights"] = weights
    return {k: float(v) for k, v in metrics.items()}
