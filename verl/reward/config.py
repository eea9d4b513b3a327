"""Typed configs for function-based rewards (verl's ``reward_model.*`` and ``custom_reward_function.*`` keys).

The trainer composes these into its full config tree; :func:`verl.reward.load_reward_manager` also accepts
that tree as plain mappings / OmegaConf and reads only the keys below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["CustomRewardFunctionConfig", "OverlongBufferConfig", "RewardManagerConfig", "to_plain_dict"]

T = TypeVar("T")


def to_plain_dict(obj: Any) -> dict[str, Any]:
    """A plain dict from ``None``, a dataclass, a mapping, or an OmegaConf node."""
    if obj is None:
        return {}
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)  # type: ignore[return-value]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"expected a mapping or a dataclass config, got {type(obj).__name__}")


class _FromAny:
    @classmethod
    def from_any(cls: type[T], obj: Any, where: str = "") -> T:
        """Build from ``None`` (defaults), an instance, a mapping or an OmegaConf node; unknown keys raise."""
        if isinstance(obj, cls):
            return obj
        values = to_plain_dict(obj)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {where or cls.__name__}; known keys: {sorted(known)}")
        return cls(**values)


@dataclass
class OverlongBufferConfig(_FromAny):
    """DAPO's soft overlong punishment (``reward_model.overlong_buffer.*``)."""

    enable: bool = False
    """Subtract the overlong penalty from responses longer than ``max_response_length - len``."""
    len: int = 0
    """Buffer length ``L_cache`` in tokens: the penalty grows linearly from 0 to ``penalty_factor`` over it."""
    penalty_factor: float = 1.0
    """Penalty at the maximum response length."""
    log: bool = False
    """Add ``overlong_reward`` and ``overlong`` to the reward extra info."""


@dataclass
class CustomRewardFunctionConfig(_FromAny):
    """A user's score function (``custom_reward_function.*``)."""

    path: str | None = None
    """Python file defining the function; ``None`` uses ``default_compute_score``."""
    name: str = "compute_score"
    """Name of the function in that file."""
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments passed to every call of the function."""


@dataclass
class RewardManagerConfig(_FromAny):
    """The keys of ``reward_model.*`` that choose and configure the reward manager."""

    reward_manager: str = "naive"
    """Registered manager name: ``naive``, ``batch``, ``prime`` or ``dapo``."""
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the manager's constructor (e.g. ``timeout_s``/``num_workers`` for ``prime``)."""
    overlong_buffer: OverlongBufferConfig = field(default_factory=OverlongBufferConfig)
    """DAPO overlong shaping (used by the ``dapo`` manager)."""

    def __post_init__(self) -> None:
        self.overlong_buffer = OverlongBufferConfig.from_any(self.overlong_buffer, "reward_model.overlong_buffer")
