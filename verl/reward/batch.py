"""The batch reward manager: one call of the score function for the whole batch."""

from __future__ import annotations

from typing import Any

from verl.reward.base import DecodedBatch, RewardManagerBase, ScoreOutcome, is_async_callable, run_coroutine_sync
from verl.reward.registry import register

__all__ = ["BATCH_TIMEOUT_S", "BatchRewardManager"]

BATCH_TIMEOUT_S = 600.0
"""Default limit of the one call that scores a whole batch, in seconds."""


@register("batch")
class BatchRewardManager(RewardManagerBase):
    """Calls ``compute_score(data_sources, solution_strs, ground_truths, extra_infos, **reward_kwargs)`` once and
    expects a list of ``B`` scores (floats or dicts with ``"score"``); useful when scoring batches is cheaper
    (a remote judge, a vectorised check). ``compute_score`` is required; it may be ``async``.

    If the call raises, or returns something that is not a list of ``B`` items, every sample scores 0 and is
    counted as an error (``on_error="raise"`` raises instead). The one call is limited to ``timeout_s`` seconds
    (default :data:`BATCH_TIMEOUT_S`, as it scores the whole batch); past it every sample counts as a timeout.
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 on_error: str = "zero", timeout_s: float | None = BATCH_TIMEOUT_S, **reward_kwargs: Any):  # fmt: skip
        if compute_score is None:
            raise ValueError(
                "the batch reward manager needs a batched compute_score(data_sources, solution_strs, ground_truths, "
                "extra_infos, **kwargs); set custom_reward_function.path and .name"
            )
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key, on_error, timeout_s)
        self.reward_kwargs = reward_kwargs

    def score(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        n = len(batch)
        kwargs = dict(data_sources=batch.data_sources, solution_strs=batch.response_strs,
                      ground_truths=batch.ground_truths, extra_infos=batch.extra_infos, **self.reward_kwargs)
        if is_async_callable(self.compute_score):
            outcome = run_coroutine_sync(self.call_score_async(**kwargs))
        else:
            outcome = self.call_score(**kwargs)
        if outcome.status != "ok":
            return [outcome] * n
        try:
            values = list(outcome.value)
            if len(values) != n:
                raise ValueError(f"the batched score function returned {len(values)} scores for {n} samples")
        except Exception as exc:
            return [self._fail(exc)] * n
        return [ScoreOutcome("ok", v) for v in values]
