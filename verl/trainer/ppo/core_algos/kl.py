"""KL between the policy and the reference model: per-token estimators, the in-reward penalty and its
coefficient controllers.

Estimators (Schulman 2020, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html), with
``log r = ref_logprob - logprob`` for tokens sampled from the policy:

- ``kl`` / ``k1``: ``-log r`` (unbiased, high variance, can be negative);
- ``abs``: ``|log r|``;
- ``mse`` / ``k2``: ``0.5 (log r)^2`` (biased, low variance, its gradient is the true KL's gradient);
- ``low_var_kl`` / ``k3``: ``r - 1 - log r`` (unbiased, always >= 0, low variance), with ``log r``
  clamped to ``[-20, 20]`` and the result to ``[-10, 10]`` so a single token cannot explode the loss;
- a ``+`` suffix (``k1+``, ``k3+``, ``low_var_kl+``, ...): the value of the named estimator with the
  gradient of ``k2``, a straight-through estimator (k1 and k3 have biased gradients as losses).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from verl.trainer.ppo.core_algos.masked import masked_mean

__all__ = [
    "KL_PENALTY_TYPES",
    "AdaptiveKLController",
    "FixedKLController",
    "apply_kl_penalty",
    "compute_kl_penalized_rewards",
    "get_kl_controller",
    "kl_penalty",
    "kl_penalty_forward",
]

_BASE_KL_TYPES = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3")
#: Every accepted ``kl_penalty`` name (config keys ``algorithm.kl_penalty``, ``actor.kl_loss_type``).
KL_PENALTY_TYPES = _BASE_KL_TYPES + tuple(f"{name}+" for name in _BASE_KL_TYPES)


def kl_penalty_forward(logprob: torch.Tensor, ref_logprob: torch.Tensor, kl_penalty: str) -> torch.Tensor:
    """The value (and natural gradient) of the base estimator ``kl_penalty`` (no ``+``), ``(B, T)``."""
    log_ratio = logprob - ref_logprob  # log pi - log pi_ref
    if kl_penalty in ("kl", "k1"):
        return log_ratio
    if kl_penalty == "abs":
        return log_ratio.abs()
    if kl_penalty in ("mse", "k2"):
        return 0.5 * log_ratio.square()
    if kl_penalty in ("low_var_kl", "k3"):
        log_r = torch.clamp(-log_ratio, min=-20.0, max=20.0)  # log(pi_ref / pi)
        return torch.clamp(torch.exp(log_r) - log_r - 1.0, min=-10.0, max=10.0)
    raise ValueError(f"unknown kl_penalty {kl_penalty!r}; choose one of {list(KL_PENALTY_TYPES)}")


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kl_penalty: str) -> torch.Tensor:
    """Per-token KL estimate between the policy and the reference (see the module docstring).

    Args:
        logprob: ``(B, T)`` log-probs of the sampled tokens under the policy.
        ref_logprob: ``(B, T)`` the same under the reference model.
        kl_penalty: one of :data:`KL_PENALTY_TYPES`.

    Returns:
        ``(B, T)`` estimates (unmasked; aggregate them with the response mask).
    """
    if kl_penalty not in KL_PENALTY_TYPES:
        raise ValueError(f"unknown kl_penalty {kl_penalty!r}; choose one of {list(KL_PENALTY_TYPES)}")
    base = kl_penalty.removesuffix("+")
    value = kl_penalty_forward(logprob, ref_logprob, base)
    if not kl_penalty.endswith("+") or base in ("mse", "k2"):
        return value
    k2 = 0.5 * (logprob - ref_logprob).square()
    return k2 - k2.detach() + value.detach()  # value of `base`, gradient of k2


class FixedKLController:
    """A constant KL coefficient (``algorithm.kl_ctrl.type=fixed``)."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient stays fixed."""


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. 2019 ("Fine-Tuning Language Models from Human
    Preferences", arXiv:1909.08593), ``algorithm.kl_ctrl.type=adaptive``.

    After each batch: ``e = clip(KL / target_kl - 1, -0.2, 0.2)``, ``beta *= 1 + e * n_steps / horizon``,
    so ``beta`` grows when the policy drifts past the target KL and shrinks below it.
    """

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: float):
        if target_kl <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs target_kl > 0 and horizon > 0, got {target_kl}, {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target_kl)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move ``value`` towards keeping ``current_kl`` at the target; ``n_steps`` = samples in the batch."""
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon


def get_kl_controller(kl_ctrl: Any) -> FixedKLController | AdaptiveKLController:
    """Build the controller described by the ``algorithm.kl_ctrl`` config section.

    Args:
        kl_ctrl: a mapping or an object with ``type`` (``fixed`` | ``adaptive``), ``kl_coef``, and for
            ``adaptive`` also ``target_kl`` and ``horizon``.
    """

    def field(name: str) -> Any:
        value = kl_ctrl.get(name) if isinstance(kl_ctrl, Mapping) else getattr(kl_ctrl, name, None)
        if value is None:
            raise ValueError(f"algorithm.kl_ctrl.{name} is not set")
        return value

    kind = field("type")
    if kind == "fixed":
        return FixedKLController(kl_coef=field("kl_coef"))
    if kind == "adaptive":
        return AdaptiveKLController(field("kl_coef"), field("target_kl"), field("horizon"))
    raise ValueError(f"unknown algorithm.kl_ctrl.type {kind!r}; choose 'fixed' or 'adaptive'")


def compute_kl_penalized_rewards(
    token_level_scores: torch.Tensor,
    old_log_probs: torch.Tensor,
    ref_log_prob: torch.Tensor,
    response_mask: torch.Tensor,
    beta: float,
    kl_penalty_type: str = "kl",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_level_rewards = token_level_scores - beta * KL_t`` (Ziegler et al. 2019; InstructGPT).

    Args:
        token_level_scores, old_log_probs, ref_log_prob, response_mask: ``(B, T)``.
        beta: the KL coefficient (a controller's ``value``).
        kl_penalty_type: a :data:`KL_PENALTY_TYPES` name (``algorithm.kl_penalty``).

    Returns:
        ``(token_level_rewards, seq_kl)``: ``(B, T)`` and ``(B,)`` each sequence's mean token KL.
    """
    kld = kl_penalty(old_log_probs, ref_log_prob, kl_penalty_type) * response_mask.to(old_log_probs.dtype)
    return token_level_scores - beta * kld, masked_mean(kld, response_mask, dim=-1)


def apply_kl_penalty(data: Any, kl_ctrl: FixedKLController | AdaptiveKLController, kl_penalty: str = "kl"):
    """Driver step: put KL-penalised rewards in ``data`` and update the controller.

    Reads ``token_level_scores``, ``old_log_probs``, ``ref_log_prob``, ``response_mask`` from
    ``data.batch`` (a :class:`~verl.protocol.DataProto`), writes ``token_level_rewards``, then calls
    ``kl_ctrl.update(current_kl, batch_size)`` with the batch mean of the per-sequence KL.

    Returns:
        ``(data, metrics)`` with metrics ``actor/reward_kl_penalty`` (the mean KL) and
        ``actor/reward_kl_penalty_coeff`` (the ``beta`` used for this batch), as floats.
    """
    batch = data.batch
    beta = kl_ctrl.value
    rewards, seq_kl = compute_kl_penalized_rewards(
        batch["token_level_scores"], batch["old_log_probs"], batch["ref_log_prob"], batch["response_mask"],
        beta, kl_penalty,
    )  # fmt: skip
    current_kl = float(seq_kl.mean())  # once per step on the driver: this sync is fine
    kl_ctrl.update(current_kl=current_kl, n_steps=rewards.shape[0])
    batch["token_level_rewards"] = rewards
    return data, {"actor/reward_kl_penalty": current_kl, "actor/reward_kl_penalty_coeff": beta}
