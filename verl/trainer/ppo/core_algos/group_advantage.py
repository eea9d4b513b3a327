"""Outcome advantage estimators that compare the samples of one prompt (a group sharing a ``uid``).

Each takes ``index``: a length-``B`` array (numpy object array, list or tensor) of hashable uids; samples
with equal uids form a group. Scores are the sum of ``token_level_rewards`` over the response, and the
per-sample advantage is broadcast over the response tokens. All estimators return ``(advantages,
returns)`` with ``returns == advantages`` (outcome-only methods have no separate value target), both
``(B, T)`` and zero where ``response_mask`` is 0. Group statistics are vectorised (scatter-adds over group
ids), so nothing syncs with the device per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from verl.trainer.ppo.core_algos.advantage import AdvantageEstimator, config_value, register_adv_est
from verl.trainer.ppo.core_algos.masked import masked_whiten

__all__ = [
    "compute_gpg_outcome_advantage",
    "compute_grpo_outcome_advantage",
    "compute_grpo_passk_outcome_advantage",
    "compute_opo_outcome_advantage",
    "compute_reinforce_plus_plus_baseline_outcome_advantage",
    "compute_rloo_outcome_advantage",
    "group_ids_from_index",
]


def group_ids_from_index(index: np.ndarray | Sequence[Any] | torch.Tensor, batch_size: int) -> tuple[np.ndarray, int]:
    """Map uids to group ids ``0..G-1`` (in order of first appearance).

    Returns:
        ``(ids, num_groups)`` with ``ids`` an int64 numpy array of shape ``(B,)``.
    """
    if isinstance(index, torch.Tensor):
        index = index.tolist()  # 0-d tensors hash by identity, not value
    if len(index) != batch_size:
        raise ValueError(
            f"index has {len(index)} uids but the batch has {batch_size} samples; pass one uid per sample "
            "(data.non_tensor_batch['uid'])"
        )
    first_seen: dict[Any, int] = {}
    try:
        ids = np.fromiter((first_seen.setdefault(u, len(first_seen)) for u in index), dtype=np.int64, count=batch_size)
    except TypeError as err:
        raise TypeError(f"index entries must be hashable uids (str or int): {err}") from None
    return ids, len(first_seen)


class _Groups:
    """Group ids of a batch on the scores' device, with per-group sums done by scatter-adds."""

    def __init__(self, index: Any, scores: torch.Tensor):
        ids, self.num_groups = group_ids_from_index(index, scores.shape[0])
        self.sizes_np = np.bincount(ids, minlength=self.num_groups)  # (G,) on the host, free to inspect
        self.ids = torch.from_numpy(ids).to(scores.device)  # (B,)
        self.sizes = torch.from_numpy(self.sizes_np).to(scores.device, scores.dtype)  # (G,)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,) -> (G,)`` per-group sums."""
        return torch.zeros(self.num_groups, dtype=x.dtype, device=x.device).index_add_(0, self.ids, x)

    def reduce(self, x: torch.Tensor, how: str) -> torch.Tensor:
        """``(B,) -> (G,)`` per-group ``"amax"`` or ``"amin"``."""
        start = float("-inf") if how == "amax" else float("inf")
        init = torch.full((self.num_groups,), start, dtype=x.dtype, device=x.device)
        return init.scatter_reduce(0, self.ids, x, reduce=how, include_self=True)

    def mean_std(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample group mean and unbiased group std, ``(B,)`` each; a group of one gets mean 0, std 1."""
        mean = self.sum(scores) / self.sizes  # (G,)
        var = self.sum((scores - mean[self.ids]) ** 2) / (self.sizes - 1).clamp(min=1)  # (G,)
        single = self.sizes < 2
        mean = torch.where(single, torch.zeros_like(mean), mean)
        std = torch.where(single, torch.ones_like(var), var.sqrt())
        return mean[self.ids], std[self.ids]


def _outcome_scores(token_level_rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    if token_level_rewards.dim() != 2 or token_level_rewards.shape != response_mask.shape:
        raise ValueError(
            f"token_level_rewards {tuple(token_level_rewards.shape)} and response_mask "
            f"{tuple(response_mask.shape)} must both be [batch, response_len]"
        )
    dtype = torch.promote_types(token_level_rewards.dtype, torch.float32)
    return token_level_rewards.to(dtype).sum(dim=-1)  # (B,)


def _broadcast(adv: torch.Tensor, response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = adv.unsqueeze(-1) * response_mask.to(adv.dtype)  # (B, T)
    return out, out


@register_adv_est(AdvantageEstimator.GRPO)
def compute_grpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    config: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300): ``A_i = (r_i - mean_g) / (std_g + eps)``.

    ``std_g`` is the unbiased std of the group's scores; a group of one gets mean 0 and std 1. With
    ``norm_adv_by_std_in_grpo=False`` the std division is dropped: ``A_i = r_i - mean_g``, the Dr. GRPO
    advantage (Liu et al. 2025, arXiv:2503.20783), which does not up-weight easy/hard prompts.

    Args:
        token_level_rewards: ``(B, T)``.
        response_mask: ``(B, T)``.
        index: ``(B,)`` uids; equal uids = one group.
        epsilon: added to the std (``1e-6``).
        norm_adv_by_std_in_grpo: config key ``algorithm.norm_adv_by_std_in_grpo``.

    Returns:
        ``(advantages, returns)``, equal, ``(B, T)``.
    """
    with torch.no_grad():
        scores = _outcome_scores(token_level_rewards, response_mask)
        mean, std = _Groups(index, scores).mean_std(scores)
        adv = (scores - mean) / (std + epsilon) if norm_adv_by_std_in_grpo else scores - mean
        return _broadcast(adv, response_mask)


@register_adv_est(AdvantageEstimator.GRPO_PASSK)
def compute_grpo_passk_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass@k-style advantage: only the best sample of each group learns, from its margin over the runner-up.

    For the max-of-k objective (Tang et al. 2025, "Optimizing Language Models for Inference Time
    Objectives using Reinforcement Learning", arXiv:2503.19595) the leave-one-out credit of sample ``i``
    is ``max(r) - max_{j != i} r_j``, which is ``r_max - r_second`` for the best sample and 0 for the
    others. Divided by ``std_g + eps`` when ``norm_adv_by_std_in_grpo``. Ties give the (first) best
    sample 0. Every group needs at least 2 samples.

    Args:
        token_level_rewards, response_mask: ``(B, T)``.
        index: ``(B,)`` uids.
        config: the algorithm config; as in verl, its ``norm_adv_by_std_in_grpo`` (default True) wins.

    Returns:
        ``(advantages, returns)``, equal, ``(B, T)``.
    """
    if config is not None:
        norm_adv_by_std_in_grpo = config_value(config, "norm_adv_by_std_in_grpo", True)
    with torch.no_grad():
        scores = _outcome_scores(token_level_rewards, response_mask)
        groups = _Groups(index, scores)
        if groups.sizes_np.min() < 2:
            raise ValueError(
                "grpo_passk needs at least 2 samples per prompt; set actor_rollout_ref.rollout.n >= 2"
            )
        ids, num_groups = groups.ids, groups.num_groups
        best = groups.reduce(scores, "amax")  # (G,)
        position = torch.arange(scores.shape[0], device=scores.device)
        is_best = scores == best[ids]
        first_best = torch.full((num_groups,), scores.shape[0], device=scores.device, dtype=position.dtype)
        first_best = first_best.scatter_reduce(  # (G,) lowest position holding the group max
            0, ids, torch.where(is_best, position, scores.shape[0]), reduce="amin", include_self=True
        )
        winner = position == first_best[ids]  # (B,)
        others = torch.where(winner, torch.full_like(scores, float("-inf")), scores)
        second = groups.reduce(others, "amax")  # (G,)
        margin = best - second
        if norm_adv_by_std_in_grpo:
            _, std = groups.mean_std(scores)
            margin = margin[ids] / (std + epsilon)
        else:
            margin = margin[ids]
        adv = torch.where(winner, margin, torch.zeros_like(scores))
        return _broadcast(adv, response_mask)


@register_adv_est(AdvantageEstimator.RLOO)
def compute_rloo_outcome_advantage(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any, config: Any = None, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024, arXiv:2402.14740): leave-one-out baseline.

    ``A_i = r_i - mean_{j != i} r_j = n / (n - 1) * (r_i - mean_g)`` for a group of ``n >= 2``; a group of
    one has no baseline (``A_i = r_i``).

    Returns:
        ``(advantages, returns)``, equal, ``(B, T)``.
    """
    with torch.no_grad():
        scores = _outcome_scores(token_level_rewards, response_mask)
        groups = _Groups(index, scores)
        n = groups.sizes[groups.ids]  # (B,)
        others_mean = (groups.sum(scores)[groups.ids] - scores) / (n - 1).clamp(min=1)
        adv = torch.where(n > 1, scores - others_mean, scores)
        return _broadcast(adv, response_mask)


@register_adv_est(AdvantageEstimator.REINFORCE_PLUS_PLUS_BASELINE)
def compute_reinforce_plus_plus_baseline_outcome_advantage(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any, config: Any = None, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline (Hu 2025, arXiv:2501.03262): group-mean baseline, then batch whitening.

    ``A_i = r_i - mean_g`` (a group of one: baseline 0), broadcast over the tokens, then whitened over all
    valid tokens of the batch (so longer responses weigh more in the batch statistics).

    Returns:
        ``(advantages, returns)``, equal, ``(B, T)``.
    """
    with torch.no_grad():
        scores = _outcome_scores(token_level_rewards, response_mask)
        mean, _ = _Groups(index, scores).mean_std(scores)
        mask = response_mask.to(scores.dtype)
        adv = (scores - mean).unsqueeze(-1) * mask  # (B, T)
        adv = masked_whiten(adv, mask) * mask
        return adv, adv


@register_adv_est(AdvantageEstimator.OPO)
def compute_opo_outcome_advantage(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any, config: Any = None, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """OPO (Hao et al. 2025, "On-Policy RL with Optimal Reward Baseline", arXiv:2505.23585).

    The variance-optimal baseline for sequence-level rewards weighs each sample by its length:
    ``b_g = sum_j |y_j| r_j / sum_j |y_j|`` over the group, ``A_i = r_i - b_g`` (a group of one: ``b = 0``).
    ``|y_j|`` is the number of valid tokens of response ``j``.

    Returns:
        ``(advantages, returns)``, equal, ``(B, T)``.
    """
    with torch.no_grad():
        scores = _outcome_scores(token_level_rewards, response_mask)
        groups = _Groups(index, scores)
        lengths = response_mask.to(scores.dtype).sum(dim=-1)  # (B,)
        baseline = groups.sum(lengths * scores) / groups.sum(lengths).clamp(min=1e-8)  # (G,)
        baseline = torch.where(groups.sizes > 1, baseline, torch.zeros_like(baseline))
        return _broadcast(scores - baseline[groups.ids], response_mask)


GPG_ALPHA_MODES = ("nonzero_scores", "informative_groups")


@register_adv_est(AdvantageEstimator.GPG)
def compute_gpg_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    f_norm: float = 1.0,
    alpha: float = 1.0,
    config: Any = None,
    alpha_from: str = "nonzero_scores",
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPG (Chu et al. 2025, "GPG: A Simple and Strong RL Baseline for Model Reasoning", arXiv:2504.02546).

    ``A_i = alpha * (r_i - mean_g) / F_norm`` (a group of one has baseline 0). The batch scale ``alpha``:

    - ``alpha_from="nonzero_scores"`` (verl's, the default): ``alpha = B / max(#{i: r_i != 0}, 1)``.
    - ``alpha_from="informative_groups"`` (our option, the paper's intent): ``alpha = B / (B - M)`` where ``M``
      counts the samples whose group (of two or more) has all-equal scores, which carry no gradient; so the
      informative samples keep the full gradient magnitude whatever the reward scale (verl's count depends on
      whether a wrong answer scores 0 or -1).

    Args:
        f_norm: the constant ``F_norm`` (the paper uses 1).
        epsilon, alpha, config: accepted for verl's signature; ``alpha`` is always computed as above.

    Returns:
        ``(advantages, returns)``, equal, ``(B, T)``.
    """
    if alpha_from not in GPG_ALPHA_MODES:
        raise ValueError(f"alpha_from must be one of {GPG_ALPHA_MODES}, got {alpha_from!r}")
    with torch.no_grad():
        scores = _outcome_scores(token_level_rewards, response_mask)
        groups = _Groups(index, scores)
        mean, _ = groups.mean_std(scores)
        batch = float(scores.shape[0])
        if alpha_from == "nonzero_scores":
            alpha_t = batch / torch.count_nonzero(scores).clamp(min=1)
        else:
            all_equal = groups.reduce(scores, "amax") == groups.reduce(scores, "amin")  # (G,)
            invalid = (all_equal & (groups.sizes > 1))[groups.ids].to(scores.dtype)  # (B,)
            alpha_t = batch / (batch - invalid.sum()).clamp(min=1)
        return _broadcast(alpha_t * (scores - mean) / f_norm, response_mask)
