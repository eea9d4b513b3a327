"""The batch reward manager: one call of the score function for the whole batch."""

from __future__ import annotations

from typing import Any

from verl.reward.base import DecodedBatch, RewardManagerBase, ScoreOutcome, is_async_callable, run_coroutine_sync
from verl.reward.registry import register

__all__ = ["BatchRewardManager"]


@register("batch")
class BatchRewardManager(RewardManagerBase):
    """Calls ``compute_score(data_sources, solution_strs, ground_truths, extra_infos, **reward_kwargs)`` once and
    expects a list of ``B`` scores (floats or dicts with ``"score"``); useful when scoring batches is cheaper
    (a remote judge, a vectorised check). ``compute_score`` is required; it may be ``async``.

    If the call raises, or returns something that is not a list of ``B`` items, every sample scores 0 and is
    counted as an error (``on_error="raise"`` raises instead).
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 on_error: str = "zero", **reward_kwargs: Any):  # fmt: skip
        if compute_score is None:
            raise ValueError(
                "the batch reward manager needs a batched compute_score(data_sources, solution_strs, ground_truths, "
                "extra_infos, **kwargs); set custom_reward_function.path and .name"
            )
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key, on_error)
        self.reward_kwargs = reward_kwargs

    def score(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        n = len(batch)
        try:
            values = self.compute_score(
                data_sources=batch.data_sources, solution_strs=batch.response_strs,
                ground_truths=batch.ground_truths, extra_infos=batch.extra_infos, **self.reward_kwargs,
            )  # fmt: skip
            if is_async_callable(self.compute_score):
                values = run_coroutine_sync(values)
            values = list(values)
            if len(values) != n:
                raise ValueError(f"the batched score function returned {len(values)} scores for {n} samples")
        except Exception as exc:
            return [self._fail(exc)] * n
        return [ScoreOutcome("ok", v) for v in values]
