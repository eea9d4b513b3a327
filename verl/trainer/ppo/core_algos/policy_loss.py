"""Policy-gradient losses: PPO, GSPO, GPG, GMPO, CISPO, written in the keyword convention.

The registry (:mod:`loss_contract`) makes every loss callable in verl's convention too
(``fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights)`` ->
``(loss, metrics)``). The keyword convention, which the actor uses, is the same for all::

    fn = get_policy_loss_fn(loss_mode)   # actor_rollout_ref.actor.policy_loss.loss_mode
    pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower = fn(
        old_log_prob, log_prob, advantages, response_mask,
        cliprange=..., cliprange_low=..., cliprange_high=..., clip_ratio_c=..., loss_agg_mode=...,
        clip_cov_ratio=..., clip_cov_lb=..., clip_cov_ub=..., kl_cov_ratio=..., ppo_kl_coef=...,
        rollout_is_weights=..., global_num_tokens=..., global_num_seqs=..., loss_scale_factor=...,
    )

Tensors are ``(B, T)``. A loss ignores the numbers it has no use for. ``rollout_is_weights`` (``(B, T)``,
e.g. from :func:`compute_tis_weights`) multiplies the per-token loss before aggregation;
``global_num_tokens``/``global_num_seqs``/``loss_scale_factor`` go to :func:`agg_loss` (see
:mod:`aggregation` for how the worker sets them). The three metrics are 0-d tensors over this call's
valid tokens; nothing here calls ``.item()``.
"""

from __future__ import annotations

import torch

from verl.trainer.ppo.core_algos.aggregation import Count, agg_loss, check_loss_agg_mode
from verl.trainer.ppo.core_algos.loss_contract import (
    POLICY_LOSS_PARAMS,
    POLICY_LOSS_REGISTRY,
    get_policy_loss_fn,
    register_policy_loss,
)
from verl.trainer.ppo.core_algos.masked import masked_mean

__all__ = [
    "POLICY_LOSS_PARAMS",
    "POLICY_LOSS_REGISTRY",
    "compute_policy_loss",
    "compute_policy_loss_cispo",
    "compute_policy_loss_geo_mean",
    "compute_policy_loss_gpg",
    "compute_policy_loss_gspo",
    "compute_policy_loss_vanilla",
    "get_policy_loss_fn",
    "register_policy_loss",
]

PolicyLossOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

# log-ratios are clamped before exp() so one wild token cannot overflow the ratio
LOG_RATIO_CLAMP = 20.0


def check_inputs(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str,
    cliprange: float,
) -> None:
    """Shape, mode and argument-order checks shared by the losses (host-side only)."""
    if isinstance(cliprange, str):
        raise TypeError(
            f"cliprange got the string {cliprange!r}: the 5th positional argument of a policy loss is cliprange "
            "(as in compute_policy_loss); pass loss_agg_mode by keyword"
        )
    check_loss_agg_mode(loss_agg_mode)
    shapes = {
        "old_log_prob": tuple(old_log_prob.shape),
        "log_prob": tuple(log_prob.shape),
        "advantages": tuple(advantages.shape),
        "response_mask": tuple(response_mask.shape),
    }
    if len(set(shapes.values())) != 1 or len(shapes["log_prob"]) != 2:
        raise ValueError(f"policy loss inputs must all be [batch, response_len], got {shapes}")


def clip_bounds(cliprange: float, cliprange_low: float | None, cliprange_high: float | None) -> tuple[float, float]:
    """``(low, high)``: the asymmetric clip ranges, each defaulting to ``cliprange``."""
    low = cliprange if cliprange_low is None else cliprange_low
    high = cliprange if cliprange_high is None else cliprange_high
    if low < 0 or high < 0:
        raise ValueError(f"clip ranges must be >= 0, got cliprange_low={low}, cliprange_high={high}")
    return low, high


def clamped_log_ratio(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.Tensor:
    """``clamp(log_prob - old_log_prob, -20, 20)``, ``(B, T)``."""
    return torch.clamp(log_prob - old_log_prob, min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)


def aggregate_pg(
    pg_losses: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str,
    rollout_is_weights: torch.Tensor | None,
    global_num_tokens: Count | None,
    global_num_seqs: Count | None,
    loss_scale_factor: float | None,
) -> torch.Tensor:
    """Apply the (detached) importance weights per token, then :func:`agg_loss`."""
    if rollout_is_weights is not None:
        if rollout_is_weights.shape != pg_losses.shape:
            raise ValueError(
                f"rollout_is_weights has shape {tuple(rollout_is_weights.shape)}, expected {tuple(pg_losses.shape)}"
            )
        pg_losses = pg_losses * rollout_is_weights.detach()
    return agg_loss(
        pg_losses,
        response_mask,
        loss_agg_mode,
        global_num_tokens=global_num_tokens,
        global_num_seqs=global_num_seqs,
        loss_scale_factor=loss_scale_factor,
    )


@register_policy_loss("vanilla")
def compute_policy_loss(
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
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347) with clip-higher and dual-clip.

    ``r = exp(clamp(log_prob - old_log_prob, -20, 20))``;
    ``L = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))``: asymmetric clip ranges, "clip-higher" from
    DAPO (Yu et al. 2025, arXiv:2503.14476); for ``A < 0`` additionally ``L = min(L, -A c)``, the dual-clip
    of Ye et al. 2020 (arXiv:1912.09729), which bounds the loss (and zeroes the gradient) when ``r > c``.

    Args:
        old_log_prob, log_prob, advantages, response_mask: ``(B, T)``.
        cliprange: ``eps`` (``actor.clip_ratio``); ``cliprange_low``/``cliprange_high`` override each side
            (``actor.clip_ratio_low``/``clip_ratio_high``).
        clip_ratio_c: dual-clip bound ``c > 1`` (``actor.clip_ratio_c``).
        loss_agg_mode: see :func:`agg_loss`.
        The keyword-only arguments are described in the module docstring.

    Returns:
        ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``: the loss, the fraction of tokens where the
        clip binds, ``mean(old_log_prob - log_prob)``, and the fraction where the dual-clip binds.
    """
    check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, cliprange)
    if clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 (the dual-clip bound on the ratio), got {clip_ratio_c}")
    low, high = clip_bounds(cliprange, cliprange_low, cliprange_high)
    log_ratio = clamped_log_ratio(log_prob, old_log_prob)
    ratio = torch.exp(log_ratio)
    ppo_kl = masked_mean(-log_ratio.detach(), response_mask)

    surr = -advantages * ratio  # (B, T)
    surr_clipped = -advantages * torch.clamp(ratio, 1.0 - low, 1.0 + high)
    clipped = torch.maximum(surr, surr_clipped)
    pg_clipfrac = masked_mean((surr_clipped > surr).float(), response_mask)

    surr_dual = -advantages * clip_ratio_c
    negative = advantages < 0
    pg_losses = torch.where(negative, torch.minimum(clipped, surr_dual), clipped)
    pg_clipfrac_lower = masked_mean(((clipped > surr_dual) & negative).float(), response_mask)

    pg_loss = aggregate_pg(
        pg_losses, response_mask, loss_agg_mode, rollout_is_weights, global_num_tokens, global_num_seqs,
        loss_scale_factor,
    )  # fmt: skip
    return pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower


#: verl's name for the registered ``vanilla`` loss.
compute_policy_loss_vanilla = compute_policy_loss


@register_policy_loss("gspo")
def compute_policy_loss_gspo(
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
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv:2507.18071), token form.

    The ratio is per *sequence*: ``s_i = exp(mean_t (log_prob - old_log_prob))`` over valid tokens (a
    length-normalised likelihood ratio), clipped as in PPO with ``[1 - eps_low, 1 + eps_high]`` (the paper
    uses tiny ranges, ``3e-4``/``4e-4``). Per token the value is ``s_i`` and the gradient flows through each
    token's own log-prob (``s_{i,t} = sg(s_i) * pi_t / sg(pi_t)``), so with per-token advantages equal
    within a sequence this is exactly GSPO. The paper averages per sequence: use
    ``loss_agg_mode="seq-mean-token-mean"`` to reproduce it (the mode passed is honoured). Dual-clip is
    not used (``clip_ratio_c`` is ignored).

    Returns:
        ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``; ``pg_clipfrac_lower`` is the fraction
        clipped from below.
    """
    check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, cliprange)
    low, high = clip_bounds(cliprange, cliprange_low, cliprange_high)
    mask = response_mask.to(log_prob.dtype)
    log_ratio = log_prob - old_log_prob  # (B, T)
    seq_log_ratio = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
    # value: the sequence log-ratio; gradient: d log_prob_t per token
    token_log_ratio = log_prob - log_prob.detach() + seq_log_ratio.detach().unsqueeze(-1)  # (B, T)
    seq_ratio = torch.exp(torch.clamp(token_log_ratio, max=10.0))
    ppo_kl = masked_mean(-log_ratio.detach(), response_mask)

    surr = -advantages * seq_ratio
    surr_clipped = -advantages * torch.clamp(seq_ratio, 1.0 - low, 1.0 + high)
    pg_losses = torch.maximum(surr, surr_clipped)
    binds = surr_clipped > surr
    pg_clipfrac = masked_mean(binds.float(), response_mask)
    pg_clipfrac_lower = masked_mean((binds & (seq_ratio < 1.0 - low)).float(), response_mask)
    pg_loss = aggregate_pg(
        pg_losses, response_mask, loss_agg_mode, rollout_is_weights, global_num_tokens, global_num_seqs,
        loss_scale_factor,
    )  # fmt: skip
    return pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower


@register_policy_loss("gpg")
def compute_policy_loss_gpg(
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
    """GPG (Chu et al. 2025, arXiv:2504.02546): the plain policy gradient ``L = -A * log_prob``.

    No ratio and no clipping (pair it with the ``gpg`` advantage estimator). ``ppo_kl`` is still reported;
    both clip fractions are 0.
    """
    check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, cliprange)
    pg_losses = -advantages * log_prob
    ppo_kl = masked_mean((old_log_prob - log_prob).detach(), response_mask)
    zero = log_prob.new_zeros(())
    pg_loss = aggregate_pg(
        pg_losses, response_mask, loss_agg_mode, rollout_is_weights, global_num_tokens, global_num_seqs,
        loss_scale_factor,
    )  # fmt: skip
    return pg_loss, zero, ppo_kl, zero


@register_policy_loss("geo_mean")
def compute_policy_loss_geo_mean(
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
    """GMPO (Zhao et al. 2025, "Geometric-Mean Policy Optimization", arXiv:2507.20673).

    The sequence objective uses the geometric mean of the token ratios, clipped per token in log space:
    ``rho_i = exp(mean_t sgn(A) * min(sgn(A) * l_t, sgn(A) * clip(l_t, -eps_low, eps_high)))`` with
    ``l_t = log_prob - old_log_prob``; so ``cliprange=0.4`` keeps ratios in ``[e^-0.4, e^0.4]`` (the
    paper's setting). ``L_i = -A_i * rho_i`` with ``A_i`` the sequence's mean advantage; it is spread over
    the sequence's tokens and aggregated with ``loss_agg_mode`` (the paper: ``seq-mean-token-mean``).

    Returns:
        ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``: the clip fractions count tokens clipped
        with positive / negative advantage.
    """
    check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, cliprange)
    low, high = clip_bounds(cliprange, cliprange_low, cliprange_high)
    mask = response_mask.to(log_prob.dtype)
    log_ratio = clamped_log_ratio(log_prob, old_log_prob)  # (B, T)
    ppo_kl = masked_mean(-log_ratio.detach(), response_mask)
    sign = torch.sign(advantages)
    log_ratio_clipped = torch.clamp(log_ratio, -low, high)
    pessimistic = sign * torch.minimum(sign * log_ratio, sign * log_ratio_clipped)  # (B, T)
    length = mask.sum(-1).clamp(min=1)  # (B,)
    seq_ratio = torch.exp((pessimistic * mask).sum(-1) / length)  # (B,) geometric mean
    seq_adv = (advantages * mask).sum(-1) / length  # (B,)
    seq_losses = -seq_adv * seq_ratio
    pg_losses = seq_losses.unsqueeze(-1).expand_as(log_prob)  # (B, T), one value per sequence

    clipped = (log_ratio != log_ratio_clipped).detach()
    pg_clipfrac = masked_mean((clipped & (advantages > 0)).float(), response_mask)
    pg_clipfrac_lower = masked_mean((clipped & (advantages < 0)).float(), response_mask)
    pg_loss = aggregate_pg(
        pg_losses, response_mask, loss_agg_mode, rollout_is_weights, global_num_tokens, global_num_seqs,
        loss_scale_factor,
    )  # fmt: skip
    return pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower


@register_policy_loss("cispo")
def compute_policy_loss_cispo(
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
    """CISPO (MiniMax 2025, "MiniMax-M1", arXiv:2506.13585): clip the importance weight, not the update.

    ``L = -sg(clip(r, 1 - eps_low, 1 + eps_high)) * A * log_prob``: every token keeps a gradient (PPO
    would drop clipped tokens entirely); only its weight is bounded. The paper effectively disables the
    lower bound (pass a large ``cliprange_low``) and tunes ``cliprange_high``.

    Returns:
        ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``: fractions of tokens whose weight was cut
        at the upper / lower bound.
    """
    check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, cliprange)
    low, high = clip_bounds(cliprange, cliprange_low, cliprange_high)
    log_ratio = clamped_log_ratio(log_prob, old_log_prob)
    ratio = torch.exp(log_ratio).detach()
    weight = torch.clamp(ratio, 1.0 - low, 1.0 + high)  # (B, T), no gradient
    pg_losses = -advantages * weight * log_prob
    ppo_kl = masked_mean(-log_ratio.detach(), response_mask)
    pg_clipfrac = masked_mean((ratio > 1.0 + high).float(), response_mask)
    pg_clipfrac_lower = masked_mean((ratio < 1.0 - low).float(), response_mask)
    pg_loss = aggregate_pg(
        pg_losses, response_mask, loss_agg_mode, rollout_is_weights, global_num_tokens, global_num_seqs,
        loss_scale_factor,
    )  # fmt: skip
    return pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower
