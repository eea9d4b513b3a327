"""Reward managers by name (``reward_model.reward_manager=naive|batch|prime|dapo``)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["REWARD_MANAGERS", "get_reward_manager_cls", "register"]

REWARD_MANAGERS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator adding a reward manager under ``name`` (a taken name with another class raises)."""

    def decorator(cls: type) -> type:
        if REWARD_MANAGERS.get(name, cls) is not cls:
            raise ValueError(f"reward manager {name!r} is already registered as {REWARD_MANAGERS[name].__name__}")
        REWARD_MANAGERS[name] = cls
        cls.name = name
        return cls

    return decorator


def get_reward_manager_cls(name: str) -> type:
    """The reward manager class registered under ``name``."""
    if name not in REWARD_MANAGERS:
        raise ValueError(
            f"unknown reward manager {name!r}; set reward_model.reward_manager to one of {sorted(REWARD_MANAGERS)}"
        )
    return REWARD_MANAGERS[name]
