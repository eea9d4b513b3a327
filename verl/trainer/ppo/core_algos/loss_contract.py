"""The policy-loss registry and its two calling conventions.

verl's contract (what verl users register)::

    @register_policy_loss("my_loss")
    def my_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                rollout_is_weights=None) -> tuple[loss, dict[str, metric]]

``config`` is the actor config (``clip_ratio``, ``clip_ratio_low``/``high``, ``clip_ratio_c``, ``policy_loss.*``
and ``global_batch_info = {dp_size, batch_num_tokens, global_batch_size, loss_scale_factor}``, which the loss
passes on as ``agg_loss(..., **config.global_batch_info)``).

The keyword convention (what the actor worker calls today, and what the built-in losses are written in)::

    pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower = fn(old_log_prob, log_prob, advantages, response_mask,
        cliprange=..., loss_agg_mode=..., ..., global_num_tokens=..., global_num_seqs=...)   # POLICY_LOSS_PARAMS

Every registered loss is wrapped in a :class:`PolicyLoss`, which accepts BOTH conventions whatever style the
function is written in: a call with ``config`` (or verl's positional ``loss_agg_mode`` / ``config``) gets verl's
``(loss, metrics)``; a keyword call gets the 4-tuple (the three metrics taken from verl's
``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower``, 0 when a loss does not report one).
Metrics are 0-d tensors, not floats, so nothing here syncs with the host.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from verl.base_config import BaseConfig

__all__ = [
    "POLICY_LOSS_PARAMS",
    "POLICY_LOSS_REGISTRY",
    "ActorLossConfig",
    "PolicyLoss",
    "PolicyLossOptions",
    "get_policy_loss_fn",
    "register_policy_loss",
]

#: The parameter names of the keyword convention (the signature of ``compute_policy_loss``).
POLICY_LOSS_PARAMS = (
    "old_log_prob", "log_prob", "advantages", "response_mask",
    "cliprange", "cliprange_low", "cliprange_high", "clip_ratio_c", "loss_agg_mode",
    "clip_cov_ratio", "clip_cov_lb", "clip_cov_ub", "kl_cov_ratio", "ppo_kl_coef",
    "rollout_is_weights", "global_num_tokens", "global_num_seqs", "loss_scale_factor",
)  # fmt: skip

_METRIC_KEYS = ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower")


@dataclass
class PolicyLossOptions(BaseConfig):
    """verl's ``actor.policy_loss.*`` numbers a loss may read."""

    loss_mode: str = "vanilla"
    clip_cov_ratio: float = 0.0002
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 0.0002
    ppo_kl_coef: float = 1.0


@dataclass
class ActorLossConfig(BaseConfig):
    """The part of verl's ``ActorConfig`` a policy loss reads; built from a keyword call for verl-style losses."""

    clip_ratio: float = 0.2
    clip_ratio_low: float | None = None
    clip_ratio_high: float | None = None
    clip_ratio_c: float = 3.0
    loss_agg_mode: str = "token-mean"
    policy_loss: PolicyLossOptions = field(default_factory=PolicyLossOptions)
    global_batch_info: dict = field(default_factory=dict)
    """``dp_size``, ``batch_num_tokens``, ``global_batch_size``, ``loss_scale_factor`` for ``agg_loss``."""


def _read(obj: Any, key: str, default: Any) -> Any:
    """``obj.key`` (``obj[key]`` for a plain dict); ``default`` when absent or None."""
    value = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return default if value is None else value


def _keywords_from_config(config: Any, loss_agg_mode: str) -> tuple[dict[str, Any], int]:
    """The keyword-convention arguments for verl's ``config``, and its ``dp_size``."""
    clip = _read(config, "clip_ratio", 0.2)
    options = _read(config, "policy_loss", None)
    batch_info = dict(_read(config, "global_batch_info", {}))
    dp_size = int(batch_info.get("dp_size") or 1)
    tokens, seqs = batch_info.get("batch_num_tokens"), batch_info.get("global_batch_size")
    needed = {"token-mean": tokens}.get(loss_agg_mode, seqs if loss_agg_mode.startswith("seq-mean") else 0)
    if dp_size > 1 and needed is None:
        raise ValueError(f"global_batch_info needs batch_num_tokens / global_batch_size when dp_size={dp_size} > 1")
    defaults = PolicyLossOptions()
    kwargs = {
        "cliprange": clip,
        "cliprange_low": _read(config, "clip_ratio_low", clip),
        "cliprange_high": _read(config, "clip_ratio_high", clip),
        "clip_ratio_c": _read(config, "clip_ratio_c", 3.0),
        "loss_agg_mode": loss_agg_mode,
        **{k: _read(options, k, getattr(defaults, k)) for k in ("clip_cov_ratio", "clip_cov_lb", "clip_cov_ub",
                                                                 "kl_cov_ratio", "ppo_kl_coef")},
        "global_num_tokens": tokens,
        "global_num_seqs": seqs,
        "loss_scale_factor": batch_info.get("loss_scale_factor"),
    }  # fmt: skip
    return kwargs, dp_size


def _config_from_keywords(kw: dict[str, Any]) -> ActorLossConfig:
    """verl's ``config`` for a keyword call (the global counts become ``global_batch_info``)."""
    options = {k: kw[k] for k in ("clip_cov_ratio", "clip_cov_lb", "clip_cov_ub", "kl_cov_ratio", "ppo_kl_coef") if k in kw}
    batch_info = {
        "dp_size": 1,
        "batch_num_tokens": kw.get("global_num_tokens"),
        "global_batch_size": kw.get("global_num_seqs"),
        "loss_scale_factor": kw.get("loss_scale_factor"),
    }
    return ActorLossConfig(
        clip_ratio=kw.get("cliprange", 0.2),
        clip_ratio_low=kw.get("cliprange_low"),
        clip_ratio_high=kw.get("cliprange_high"),
        clip_ratio_c=kw.get("clip_ratio_c", 3.0),
        loss_agg_mode=kw.get("loss_agg_mode", "token-mean"),
        policy_loss=PolicyLossOptions(**options),
        global_batch_info=batch_info,
    )


def _as_tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.tensor(float(value), dtype=torch.float32, device=like.device)


class PolicyLoss:
    """A registered policy loss, callable in verl's convention and in the keyword one (see the module docstring).

    Attributes:
        fn: the function as registered; ``verl_style``: whether it is written in verl's convention.
    """

    def __init__(self, name: str, fn: Callable[..., Any], verl_style: bool):
        self.name, self.fn, self.verl_style = name, fn, verl_style
        functools.update_wrapper(self, fn)  # name, docstring and signature of the function

    @staticmethod
    def _is_verl_call(args: tuple, kwargs: dict) -> bool:
        return "config" in kwargs or len(args) >= 6 or (len(args) == 5 and isinstance(args[4], str))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._is_verl_call(args, kwargs):
            return self._call_verl(*args, **kwargs)
        return self._call_keywords(*args, **kwargs)

    def _call_verl(self, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode: str = "token-mean",
                   config: Any = None, rollout_is_weights: torch.Tensor | None = None):  # fmt: skip
        """verl's convention: ``(loss, {"actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"})``."""
        if self.verl_style:
            return self.fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config or ActorLossConfig(),
                           rollout_is_weights)  # fmt: skip
        kwargs, dp_size = _keywords_from_config(config, loss_agg_mode)
        loss, clipfrac, ppo_kl, clipfrac_lower = self.fn(
            old_log_prob, log_prob, advantages, response_mask, rollout_is_weights=rollout_is_weights, **kwargs
        )
        # verl scales by dp_size inside agg_loss; aggregation is linear, so scaling the result is the same
        return loss * dp_size, dict(zip(_METRIC_KEYS, (clipfrac, ppo_kl, clipfrac_lower)))

    def _call_keywords(self, old_log_prob, log_prob, advantages, response_mask, *args: Any, **kwargs: Any):
        """The keyword convention: ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``."""
        if not self.verl_style:
            return self.fn(old_log_prob, log_prob, advantages, response_mask, *args, **kwargs)
        if args:
            kwargs.update(zip(POLICY_LOSS_PARAMS[4:], args))
        config = _config_from_keywords(kwargs)
        loss, metrics = self.fn(old_log_prob, log_prob, advantages, response_mask, config.loss_agg_mode, config,
                                kwargs.get("rollout_is_weights"))  # fmt: skip
        return (loss, *(_as_tensor(metrics.get(k, 0.0), loss) for k in _METRIC_KEYS))

    def __reduce__(self) -> tuple:
        return get_policy_loss_fn, (self.name,)

    def __repr__(self) -> str:
        style = "verl" if self.verl_style else "keyword"
        return f"PolicyLoss({self.name!r}, {self.fn.__module__}.{self.fn.__qualname__}, {style} style)"


#: ``{name: PolicyLoss}``; plug-ins are added with :func:`register_policy_loss`.
POLICY_LOSS_REGISTRY: dict[str, PolicyLoss] = {}


def _style_of(name: str, fn: Callable[..., Any]) -> bool:
    """True for verl's convention (takes ``config``), False for the keyword one; anything else raises."""
    params = inspect.signature(fn).parameters
    if "config" in params and "cliprange" not in params:
        return True
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [] if takes_any else [p for p in POLICY_LOSS_PARAMS if p not in params]
    if missing:
        raise TypeError(
            f"policy loss {name!r} ({fn.__qualname__}) does not accept {missing}; write it as verl's "
            "fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights) "
            "or with the keyword signature of compute_policy_loss (or **kwargs)"
        )
    return False


def register_policy_loss(name: str) -> Callable[[Callable[..., Any]], PolicyLoss]:
    """Decorator registering a policy loss under ``name``, in either convention; returns the :class:`PolicyLoss`.

    Registering a different function under a taken name is an error (verl overwrites silently).
    """

    def decorator(fn: Callable[..., Any]) -> PolicyLoss:
        fn = fn.fn if isinstance(fn, PolicyLoss) else fn
        existing = POLICY_LOSS_REGISTRY.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"policy loss {name!r} is already registered as {existing.fn.__qualname__}; pick another name")
        wrapped = existing or PolicyLoss(name, fn, _style_of(name, fn))
        POLICY_LOSS_REGISTRY[name] = wrapped
        return wrapped

    return decorator


def get_policy_loss_fn(name: str) -> PolicyLoss:
    """The policy loss registered under ``name``; an unknown name raises, listing the known ones."""
    if name not in POLICY_LOSS_REGISTRY:
        raise ValueError(
            f"unknown policy loss {name!r}; known: {sorted(POLICY_LOSS_REGISTRY)}. "
            "Register your own with @register_policy_loss(name)."
        )
    return POLICY_LOSS_REGISTRY[name]
