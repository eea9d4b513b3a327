"""The naive reward manager: calls the score function once per sample, in this process."""

from __future__ import annotations

import asyncio
from typing import Any

from verl.reward.base import (
    DEFAULT_TIMEOUT_S,
    DecodedBatch,
    RewardManagerBase,
    ScoreOutcome,
    is_async_callable,
    run_coroutine_sync,
)
from verl.reward.registry import register

__all__ = ["NaiveRewardManager"]


@register("naive")
class NaiveRewardManager(RewardManagerBase):
    """Per-sample scoring: ``compute_score(data_source, solution_str, ground_truth, extra_info)``.

    An ``async`` score function is awaited for all samples concurrently (at most ``max_concurrency`` at once).
    A score that raises gives 0 and is counted; a call running past ``timeout_s`` is interrupted, scores 0 and
    is counted as a timeout. (A call stuck inside native code cannot be interrupted in-process: the ``prime``
    manager runs each call in a process it can kill.)
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 on_error: str = "zero", max_concurrency: int = 64,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S):  # fmt: skip
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key, on_error, timeout_s)
        if max_concurrency < 1:
            raise ValueError(f"reward_model.reward_kwargs.max_concurrency={max_concurrency} must be >= 1")
        self.max_concurrency = max_concurrency

    def _args(self, batch: DecodedBatch, i: int) -> tuple:
        return batch.data_sources[i], batch.response_strs[i], batch.ground_truths[i], batch.extra_infos[i]

    def score(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        if is_async_callable(self.compute_score):
            return run_coroutine_sync(self._score_async(batch))
        outcomes = []
        for i in range(len(batch)):
            source, solution, truth, extra = self._args(batch, i)
            outcomes.append(self.call_score(data_source=source, solution_str=solution, ground_truth=truth,
                                            extra_info=extra))
        return outcomes

    async def _score_async(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(i: int) -> ScoreOutcome:
            source, solution, truth, extra = self._args(batch, i)
            async with limit:
                return await self.call_score_async(data_source=source, solution_str=solution, ground_truth=truth,
                                                   extra_info=extra)

        return list(await asyncio.gather(*(one(i) for i in range(len(batch)))))
