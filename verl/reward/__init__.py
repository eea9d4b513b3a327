"""Reward managers: turn a rollout batch into ``token_level_scores`` with a rule-based score function.

Managers are registered by name (``reward_model.reward_manager``): ``naive`` (per sample), ``batch`` (one call
per batch), ``prime`` (worker processes with a per-sample timeout), ``dapo`` (overlong shaping). Build the one a
config asks for with :func:`load_reward_manager`; a user's function is loaded by :func:`get_custom_reward_fn`.
"""

from verl.reward.base import RewardManagerBase, coerce_score, decode_batch, place_rewards
from verl.reward.batch import BatchRewardManager
from verl.reward.config import CustomRewardFunctionConfig, OverlongBufferConfig, RewardManagerConfig
from verl.reward.dapo import DAPORewardManager, overlong_penalty
from verl.reward.loader import CustomRewardFunction, compute_reward, get_custom_reward_fn, load_reward_manager
from verl.reward.naive import NaiveRewardManager
from verl.reward.prime import PrimeRewardManager
from verl.reward.registry import REWARD_MANAGERS, get_reward_manager_cls, register

__all__ = [
    "REWARD_MANAGERS",
    "BatchRewardManager",
    "CustomRewardFunction",
    "CustomRewardFunctionConfig",
    "DAPORewardManager",
    "NaiveRewardManager",
    "OverlongBufferConfig",
    "PrimeRewardManager",
    "RewardManagerBase",
    "RewardManagerConfig",
    "coerce_score",
    "compute_reward",
    "decode_batch",
    "get_custom_reward_fn",
    "get_reward_manager_cls",
    "load_reward_manager",
    "overlong_penalty",
    "place_rewards",
    "register",
]
