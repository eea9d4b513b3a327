"""Typed configs for function-based rewards (verl's ``reward_model.*`` and ``custom_reward_function.*`` keys).

The trainer composes these into its full config tree; :func:`verl.reward.load_reward_manager` also accepts
that tree as plain mappings / OmegaConf and reads only the keys below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from verl.utils.config import from_mapping, plain_mapping, to_dict

__all__ = ["CustomRewardFunctionConfig", "OverlongBufferConfig", "RewardManagerConfig", "to_plain_dict"]

T = TypeVar("T")


def to_plain_dict(obj: Any) -> dict[str, Any]:
    """A plain dict from ``None``, a (nested) dataclass, a mapping, or an OmegaConf node."""
    if obj is None:
        return {}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_dict(obj)
    return plain_mapping(obj)


class _FromAny:
    @classmethod
    def from_any(cls: type[T], obj: Any, where: str = "") -> T:
        """Build from ``None`` (defaults), an instance, a mapping or an OmegaConf node; unknown keys raise
        :class:`~verl.utils.config.ConfigError` naming ``<where>.<key>``."""
        if isinstance(obj, cls):
            return obj
        return from_mapping(cls, to_plain_dict(obj), prefix=f"{where}." if where else "")


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
