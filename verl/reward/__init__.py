"""Reward managers: turn a rollout batch into ``token_level_scores`` with a rule-based score function.

Managers are registered by name (``reward_model.reward_manager``): ``naive`` (per sample), ``batch`` (one call
per batch), ``prime`` (worker processes it can kill), ``dapo`` (overlong shaping). Every manager limits each
call of the score function (``timeout_s``) and reports unusable scores (:mod:`verl.reward.faults`). Build the one a
config asks for with :func:`load_reward_manager`; a user's function is loaded by :func:`get_custom_reward_fn`.
"""

from verl.reward.base import (
    DEFAULT_TIMEOUT_S,
    RewardFailure,
    RewardManagerBase,
    ScoreTimeoutError,
    coerce_score,
    decode_batch,
    fault_metrics,
    place_rewards,
)
from verl.reward.batch import BatchRewardManager
from verl.reward.config import CustomRewardFunctionConfig, OverlongBufferConfig, RewardManagerConfig
from verl.reward.dapo import DAPORewardManager, overlong_penalty
from verl.reward.faults import RewardFaultError, RewardFaultTracker, RewardResult, score_batch
from verl.reward.loader import CustomRewardFunction, compute_reward, get_custom_reward_fn, load_reward_manager
from verl.reward.naive import NaiveRewardManager
from verl.reward.prime import PrimeRewardManager
from verl.reward.registry import REWARD_MANAGERS, get_reward_manager_cls, register

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "REWARD_MANAGERS",
    "BatchRewardManager",
    "CustomRewardFunction",
    "CustomRewardFunctionConfig",
    "DAPORewardManager",
    "NaiveRewardManager",
    "OverlongBufferConfig",
    "PrimeRewardManager",
    "RewardFailure",
    "RewardFaultError",
    "RewardFaultTracker",
    "RewardManagerBase",
    "RewardManagerConfig",
    "RewardResult",
    "ScoreTimeoutError",
    "coerce_score",
    "compute_reward",
    "decode_batch",
    "fault_metrics",
    "get_custom_reward_fn",
    "get_reward_manager_cls",
    "load_reward_manager",
    "overlong_penalty",
    "place_rewards",
    "register",
    "score_batch",
]
