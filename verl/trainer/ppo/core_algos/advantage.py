"""Advantage estimators: the registry, and the token-level estimators (GAE, REINFORCE++, ReMax).

Every estimator returns ``(advantages, returns)``, both ``(B, T)`` and zero where ``response_mask`` is 0.
Group estimators (GRPO, RLOO, ...) live in :mod:`group_advantage`. They run on the driver once per step;
none of them syncs with the host.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from typing import Any

import torch

from verl.trainer.ppo.core_algos.masked import masked_whiten

__all__ = [
    "ADV_ESTIMATOR_REGISTRY",
    "AdvantageEstimator",
    "call_adv_estimator",
    "config_value",
    "compute_gae_advantage_return",
    "compute_reinforce_plus_plus_outcome_advantage",
    "compute_remax_outcome_advantage",
    "get_adv_estimator_fn",
    "register_adv_est",
]


class AdvantageEstimator(str, Enum):
    """Names of the built-in estimators (config key ``algorithm.adv_estimator``)."""

    GAE = "gae"
    GRPO = "grpo"
    GRPO_PASSK = "grpo_passk"
    RLOO = "rloo"
    REINFORCE_PLUS_PLUS = "reinforce_plus_plus"
    REINFORCE_PLUS_PLUS_BASELINE = "reinforce_plus_plus_baseline"
    REMAX = "remax"
    OPO = "opo"
    GPG = "gpg"


#: ``{name: estimator}``; plug-ins are added with :func:`register_adv_est`.
ADV_ESTIMATOR_REGISTRY: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {}


def _name_of(name: str | Enum) -> str:
    return name.value if isinstance(name, Enum) else name


def register_adv_est(name: str | AdvantageEstimator) -> Callable:
    """Decorator registering an advantage estimator under ``name`` (a string or an :class:`AdvantageEstimator`).

    Registering a different function under a taken name is an error (re-registering the same one is not).
    """
    key = _name_of(name)

    def decorator(fn: Callable) -> Callable:
        existing = ADV_ESTIMATOR_REGISTRY.get(key)
        if existing is not None and existing is not fn:
            raise ValueError(
                f"advantage estimator {key!r} is already registered as {existing.__module__}.{existing.__qualname__}; "
                "pick another name"
            )
        ADV_ESTIMATOR_REGISTRY[key] = fn
        return fn

    return decorator


def get_adv_estimator_fn(name: str | AdvantageEstimator) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The estimator registered under ``name``; an unknown name raises, listing the known ones."""
    key = _name_of(name)
    if key not in ADV_ESTIMATOR_REGISTRY:
        raise ValueError(
            f"unknown advantage estimator {key!r}; known: {sorted(ADV_ESTIMATOR_REGISTRY)}. "
            "Register your own with @register_adv_est(name)."
        )
    return ADV_ESTIMATOR_REGISTRY[key]


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """``config.key`` for a dataclass, a mapping (``DictConfig``, ``dict``) or ``None`` (-> ``default``)."""
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


class AlgoConfigView:
    """The ``config`` a verl-style estimator receives: attribute access plus ``get``/``[]`` over any config
    object (our dataclass, a dict, a ``DictConfig``), so ``config.gamma`` and ``config.get("x", d)`` both work."""

    def __init__(self, config: Any):
        object.__setattr__(self, "_config", config)

    def __getattr__(self, key: str) -> Any:
        config = object.__getattribute__(self, "_config")
        if isinstance(config, dict):
            if key not in config:
                raise AttributeError(key)
            return config[key]
        return getattr(config, key)

    def get(self, key: str, default: Any = None) -> Any:
        return config_value(object.__getattribute__(self, "_config"), key, default)

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __repr__(self) -> str:
        return f"AlgoConfigView({object.__getattribute__(self, '_config')!r})"


_MISSING = object()


def call_adv_estimator(name: str | AdvantageEstimator, **available: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Call estimator ``name`` with the arguments it declares, picked from ``available``.

    The driver passes everything it has (``token_level_rewards``, ``response_mask``, ``values``, ``index``,
    ``reward_baselines``, ``gamma``, ``lam``, ``norm_adv_by_std_in_grpo``, ``config``, ...) and each estimator
    takes what its signature names (all of it when it has ``**kwargs``). An estimator that declares ``config``
    (verl's plug-in contract) gets the algorithm config: ``available["config"]`` when given, else one made of
    ``gamma``, ``lam`` and ``norm_adv_by_std_in_grpo``; either way wrapped in :class:`AlgoConfigView`. A required
    argument that is not available is an error naming it.
    """
    fn = get_adv_estimator_fn(name)
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "config" in params or takes_any:
        config = available.get("config")
        if config is None:
            config = {k: available[k] for k in ("gamma", "lam", "norm_adv_by_std_in_grpo") if k in available}
            config["adv_estimator"] = _name_of(name)
        available = {**available, "config": AlgoConfigView(config)}
    kwargs = available if takes_any else {k: v for k, v in available.items() if k in params}
    missing = [
        k
        for k, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and k not in kwargs
    ]
    if missing:
        raise ValueError(f"advantage estimator {_name_of(name)!r} needs {missing}, which the caller did not provide")
    return fn(**kwargs)


def _check_2d(**tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if any(len(s) != 2 for s in shapes.values()) or len(set(shapes.values())) != 1:
        raise ValueError(f"expected [batch, response_len] tensors of one shape, got {shapes}")


@register_adv_est(AdvantageEstimator.GAE)
def compute_gae_advantage_return(
    token_level_rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float | None = None,
    lam: float | None = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016, arXiv:1506.02438), as used by PPO for LLMs.

    ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma * lam * A_{t+1}``, where ``t+1`` is
    the next *valid* token: tokens with ``response_mask == 0`` (tool output, padding) are skipped, so the
    next value and running advantage are carried over them and their rewards are ignored.
    ``returns = A + V`` (before whitening); advantages are then whitened over all valid tokens.

    Args:
        token_level_rewards: ``(B, T)``.
        values: ``(B, T)`` critic values.
        response_mask: ``(B, T)``.
        gamma: discount factor (``algorithm.gamma``); taken from ``config`` when not given.
        lam: GAE lambda (``algorithm.lam``); taken from ``config`` when not given.

    Returns:
        ``(advantages, returns)``, both ``(B, T)``, zero where the mask is 0.
    """
    gamma = config_value(config, "gamma", 1.0) if gamma is None else gamma
    lam = config_value(config, "lam", 1.0) if lam is None else lam
    _check_2d(token_level_rewards=token_level_rewards, values=values, response_mask=response_mask)
    with torch.no_grad():
        mask = response_mask.to(values.dtype)
        next_value = torch.zeros_like(values[:, 0])  # (B,)
        last_gae = torch.zeros_like(values[:, 0])  # (B,)
        advantages = torch.zeros_like(values)  # (B, T)
        for t in reversed(range(values.shape[1])):
            delta = token_level_rewards[:, t] + gamma * next_value - values[:, t]
            gae_t = delta + gamma * lam * last_gae
            # keep the carried value/advantage where the token is not the policy's
            next_value = torch.where(mask[:, t] > 0, values[:, t], next_value)
            last_gae = torch.where(mask[:, t] > 0, gae_t, last_gae)
            advantages[:, t] = last_gae
        returns = (advantages + values) * mask
        advantages = masked_whiten(advantages, mask) * mask
    return advantages, returns


@register_adv_est(AdvantageEstimator.REINFORCE_PLUS_PLUS)
def compute_reinforce_plus_plus_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config: Any = None,
    gamma: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++ (Hu 2025, arXiv:2501.03262): discounted return-to-go, whitened over the whole batch.

    ``G_t = r_t + gamma * G_{t+1}``, with the running return reset to 0 at every masked token (so padding
    after EOS never leaks into the response). Advantages are ``G`` whitened over all valid tokens of the
    batch (a global baseline, no critic, no groups).

    Args:
        token_level_rewards: ``(B, T)`` (usually ``scores - beta * KL`` per token, reward on the last token).
        response_mask: ``(B, T)``.
        config: the algorithm config (verl's contract): ``config.gamma`` is the discount factor.
        gamma: the discount factor directly, when no ``config`` is given (default 1.0).

    Returns:
        ``(advantages, returns)``, both ``(B, T)``, zero where the mask is 0.
    """
    if isinstance(config, (int, float)):
        raise TypeError("the 3rd argument of compute_reinforce_plus_plus_outcome_advantage is config (verl's order); "
                        "pass gamma by keyword")  # fmt: skip
    if config is not None:
        gamma = config_value(config, "gamma", 1.0 if gamma is None else gamma)
    elif gamma is None:
        gamma = 1.0
    _check_2d(token_level_rewards=token_level_rewards, response_mask=response_mask)
    with torch.no_grad():
        mask = response_mask.to(token_level_rewards.dtype)
        returns = torch.zeros_like(token_level_rewards)  # (B, T)
        running = torch.zeros_like(token_level_rewards[:, 0])  # (B,)
        for t in reversed(range(token_level_rewards.shape[1])):
            running = token_level_rewards[:, t] + gamma * running
            returns[:, t] = running
            running = running * mask[:, t]  # reset at EOS / masked tokens
        returns = returns * mask
        advantages = masked_whiten(returns, mask) * mask
    return advantages, returns


@register_adv_est(AdvantageEstimator.REMAX)
def compute_remax_outcome_advantage(
    token_level_rewards: torch.Tensor,
    reward_baselines: torch.Tensor,
    response_mask: torch.Tensor,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ReMax (Li et al. 2023, arXiv:2310.10505): the reward of the greedy response is the baseline.

    ``returns_t = sum_{s >= t} r_s`` (undiscounted return-to-go over valid tokens),
    ``A_t = returns_t - b`` with ``b`` the reward of the greedy (argmax) response to the same prompt.

    Args:
        token_level_rewards: ``(B, T)``.
        reward_baselines: ``(B,)`` reward of each sample's greedy response.
        response_mask: ``(B, T)``.

    Returns:
        ``(advantages, returns)``, both ``(B, T)``, zero where the mask is 0.
    """
    _check_2d(token_level_rewards=token_level_rewards, response_mask=response_mask)
    if reward_baselines.shape != token_level_rewards.shape[:1]:
        raise ValueError(
            f"reward_baselines must have shape ({token_level_rewards.shape[0]},), got {tuple(reward_baselines.shape)}"
        )
    with torch.no_grad():
        mask = response_mask.to(token_level_rewards.dtype)
        returns = (token_level_rewards * mask).flip(-1).cumsum(-1).flip(-1)  # (B, T) reward-to-go
        advantages = (returns - reward_baselines.unsqueeze(-1)) * mask
        returns = returns * mask
    return advantages, returns
