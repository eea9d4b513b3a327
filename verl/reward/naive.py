"""The naive reward manager: calls the score function once per sample, in this process."""

from __future__ import annotations

import asyncio
from typing import Any

from verl.reward.base import DecodedBatch, RewardManagerBase, ScoreOutcome, is_async_callable, run_coroutine_sync
from verl.reward.registry import register

__all__ = ["NaiveRewardManager"]


@register("naive")
class NaiveRewardManager(RewardManagerBase):
    """Per-sample scoring: ``compute_score(data_source, solution_str, ground_truth, extra_info)``.

    An ``async`` score function is awaited for all samples concurrently (at most ``max_concurrency`` at once).
    A score that raises gives 0 and is counted; a score that can hang needs the ``prime`` manager, which
    runs each call in a process it can kill.
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 on_error: str = "zero", max_concurrency: int = 64):  # fmt: skip
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key, on_error)
        self.max_concurrency = max_concurrency

    def _args(self, batch: DecodedBatch, i: int) -> tuple:
        return batch.data_sources[i], batch.response_strs[i], batch.ground_truths[i], batch.extra_infos[i]

    def score(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        if is_async_callable(self.compute_score):
            return run_coroutine_sync(self._score_async(batch))
        outcomes = []
        for i in range(len(batch)):
            source, solution, truth, extra = self._args(batch, i)
            try:
                value = self.compute_score(data_source=source, solution_str=solution, ground_truth=truth, extra_info=extra)
                outcomes.append(ScoreOutcome("ok", value))
            except Exception as exc:
                outcomes.append(self._fail(exc))
        return outcomes

    async def _score_async(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(i: int) -> Any:
            source, solution, truth, extra = self._args(batch, i)
            async with limit:
                return await self.compute_score(
                    data_source=source, solution_str=solution, ground_truth=truth, extra_info=extra
                )

        values = await asyncio.gather(*(one(i) for i in range(len(batch))), return_exceptions=True)
        return [
            self._fail(v) if isinstance(v, Exception) else ScoreOutcome("ok", v)
            for v in values
        ]
