"""The DAPO reward manager: per-sample scores plus the soft overlong penalty.

Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale", section 3.4
("overlong reward shaping"): with maximum response length ``L_max`` and a buffer of ``L_cache`` tokens,

    R_length(y) = 0                                   if |y| <= L_max - L_cache
                = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max

scaled by ``penalty_factor`` and added to the score, so responses that run into the limit are discouraged
gradually instead of with a cliff.
"""

from __future__ import annotations

from typing import Any

from verl.reward.base import DEFAULT_TIMEOUT_S, DecodedBatch
from verl.reward.config import OverlongBufferConfig
from verl.reward.naive import NaiveRewardManager
from verl.reward.registry import register

__all__ = ["DAPORewardManager", "overlong_penalty"]


def overlong_penalty(length: int, max_resp_len: int, buffer_len: int, penalty_factor: float) -> float:
    """DAPO's soft overlong penalty (<= 0) for a response of ``length`` tokens."""
    expected = max_resp_len - buffer_len
    return min(-(length - expected) / buffer_len * penalty_factor, 0.0)


@register("dapo")
class DAPORewardManager(NaiveRewardManager):
    """Naive per-sample scoring, then ``overlong_penalty`` added when ``overlong_buffer_cfg.enable``.

    Args (besides :class:`NaiveRewardManager`'s):
        max_resp_len: ``L_max``, normally ``data.max_response_length`` (required when the buffer is enabled).
        overlong_buffer_cfg: :class:`OverlongBufferConfig` or a mapping with its keys
            (``enable``, ``len``, ``penalty_factor``, ``log``). With ``log``, the extra info gets
            ``overlong_reward`` and ``overlong`` per sample.
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 on_error: str = "zero", max_concurrency: int = 64, max_resp_len: int | None = None,
                 overlong_buffer_cfg: OverlongBufferConfig | dict | None = None,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S):  # fmt: skip
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key, on_error, max_concurrency, timeout_s)
        cfg = OverlongBufferConfig.from_any(overlong_buffer_cfg, "reward_model.overlong_buffer")
        if cfg.enable:
            if max_resp_len is None:
                raise ValueError("the DAPO overlong buffer needs max_resp_len (data.max_response_length)")
            if not 0 < cfg.len <= max_resp_len:
                raise ValueError(
                    f"reward_model.overlong_buffer.len must be in (0, max_resp_len={max_resp_len}], got {cfg.len}"
                )
            if cfg.penalty_factor < 0:
                raise ValueError(f"reward_model.overlong_buffer.penalty_factor={cfg.penalty_factor} must be >= 0 "
                                 "(a negative factor would reward overlong responses)")
        self.max_resp_len = max_resp_len
        self.overlong_buffer_cfg = cfg

    def shape_rewards(self, batch: DecodedBatch, rewards: list[float], extra: dict[str, list[Any]]) -> list[float]:
        cfg = self.overlong_buffer_cfg
        if not cfg.enable:
            return rewards
        lengths = batch.valid_response_lengths.tolist()
        penalties = [overlong_penalty(n, self.max_resp_len, cfg.len, cfg.penalty_factor) for n in lengths]
        if cfg.log:
            extra["overlong_reward"] = penalties
            extra["overlong"] = [p < 0 for p in penalties]
        return [r + p for r, p in zip(rewards, penalties)]
