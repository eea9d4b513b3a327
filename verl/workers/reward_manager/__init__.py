"""verl's path for reward managers and their registry. Thin re-exports: the implementation lives in
:mod:`verl.reward` (``AbstractRewardManager`` is verl's name for :class:`verl.reward.RewardManagerBase`)."""

from verl.reward import (
    BatchRewardManager,
    DAPORewardManager,
    NaiveRewardManager,
    PrimeRewardManager,
    REWARD_MANAGERS as REWARD_MANAGER_REGISTRY,
    RewardManagerBase as AbstractRewardManager,
    get_reward_manager_cls,
    register,
)

__all__ = [
    "REWARD_MANAGER_REGISTRY",
    "AbstractRewardManager",
    "BatchRewardManager",
    "DAPORewardManager",
    "NaiveRewardManager",
    "PrimeRewardManager",
    "get_reward_manager_cls",
    "register",
]
