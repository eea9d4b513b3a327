"""verl's path for building and calling the reward function. Thin re-exports: the implementation lives in
:mod:`verl.reward.loader`."""

from verl.reward.loader import compute_reward, get_custom_reward_fn, load_reward_manager

__all__ = ["compute_reward", "get_custom_reward_fn", "load_reward_manager"]
