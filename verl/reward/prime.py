"""The parallel ("prime") reward manager: score functions run in worker processes with a per-sample timeout.

For scorers that are slow or may hang (code execution, symbolic math): a sample whose call runs past
``timeout_s`` has its worker process killed and scores 0; an exception or a crashed worker scores 0 too. Both are
counted (``reward/num_timeouts``, ``reward/num_errors``) and the run goes on.
"""

from __future__ import annotations

from typing import Any

from verl.reward.base import DecodedBatch, RewardManagerBase, ScoreOutcome
from verl.reward.process_pool import run_calls
from verl.reward.registry import register
from verl.utils.reward_score import UnknownDataSourceError

__all__ = ["PrimeRewardManager"]


@register("prime")
class PrimeRewardManager(RewardManagerBase):
    """Per-sample scoring in a pool of ``num_workers`` processes, each call limited to ``timeout_s`` seconds.

    Args (besides :class:`RewardManagerBase`'s):
        num_workers: worker processes (default ``min(8, cpu_count)``).
        timeout_s: per-sample time limit in seconds.
        mp_context: ``"fork"`` (Linux default: fast, the score function is inherited), ``"spawn"`` or
            ``"forkserver"`` (the score function must then be importable/picklable).
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 on_error: str = "zero", num_workers: int | None = None, timeout_s: float = 300.0,
                 mp_context: str | None = None):  # fmt: skip
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key, on_error)
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.num_workers = num_workers
        self.timeout_s = timeout_s
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
                outcomes.append(ScoreOutcome("timeout" if res.status == "timeout" else "error", error=res.error))
        return outcomes
