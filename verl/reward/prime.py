"""The parallel ("prime") reward manager: score functions run in worker processes with a per-sample timeout.

For scorers that are slow or may hang (code execution, symbolic math): a sample whose call runs past
``timeout_s`` (the limit every manager has) has its worker process killed and scores 0, even when it is stuck
inside native code; an exception or a crashed worker scores 0 too. Both are
counted (``reward/num_timeouts``, ``reward/num_errors``) and the run goes on.
"""

from __future__ import annotations

from typing import Any

from verl.reward.base import DEFAULT_TIMEOUT_S, DecodedBatch, RewardManagerBase, ScoreOutcome
from verl.reward.process_pool import run_calls
from verl.reward.registry import register
from verl.utils.reward_score import UnknownDataSourceError

__all__ = ["PrimeRewardManager"]


@register("prime")
class PrimeRewardManager(RewardManagerBase):
    """Per-sample scoring in a pool of ``num_workers`` processes, each call limited to ``timeout_s`` seconds.

    Args (besides :class:`RewardManagerBase`'s, whose ``timeout_s`` is the per-sample limit here too):
        num_workers: worker processes (default ``min(8, cpu_count)``).
        mp_context: ``"fork"`` (Linux default: fast, the score function is inherited), ``"spawn"`` or
            ``"forkserver"`` (the score function must then be importable/picklable).
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 on_error: str = "zero", num_workers: int | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                 mp_context: str | None = None):  # fmt: skip
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key, on_error, timeout_s)
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"reward_model.reward_kwargs.num_workers={num_workers} must be >= 1 (or null)")
        if mp_context not in (None, "fork", "spawn", "forkserver"):
            raise ValueError(f"reward_model.reward_kwargs.mp_context={mp_context!r}: use fork, spawn or forkserver")
        self.num_workers = num_workers
        self.mp_context = mp_context

    def score(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        calls = [
            ((), {"data_source": s, "solution_str": r, "ground_truth": g, "extra_info": e})
            for s, r, g, e in zip(batch.data_sources, batch.response_strs, batch.ground_truths, batch.extra_infos)
        ]
        results = run_calls(self.compute_score, calls, self.num_workers, self.timeout_s, self.mp_context)
        outcomes = []
        for res in results:
            if res.status == "ok":
                outcomes.append(ScoreOutcome("ok", res.value))
            elif isinstance(res.exception, UnknownDataSourceError) or (
                self.on_error == "raise" and res.exception is not None
            ):
                raise res.exception
            elif self.on_error == "raise":
                raise RuntimeError(f"score function {res.status}: {res.error}")
            else:
                outcomes.append(ScoreOutcome("timeout" if res.status == "timeout" else "error", error=res.error,
                                             detail=res.traceback))
        return outcomes
