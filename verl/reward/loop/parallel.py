"""Reward scoring spread over worker processes (verl's reward-loop workers, ``reward_model.num_workers``)."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import dataclasses

import numpy as np
import torch

from verl.protocol import DataProto
from verl.reward.base import FAULT_KINDS, fault_metrics
from verl.reward.process_pool import run_calls

__all__ = ["ParallelRewardManager"]


def _score_part(manager: Any, data: DataProto) -> dict[str, Any]:
    return manager(data, return_dict=True)


class ParallelRewardManager:
    """A reward manager's scoring split over ``num_workers`` processes, with the same results.

    Each call splits the batch into ``num_workers`` contiguous parts; each part is scored by ``manager`` (with its
    time limits and fault counting) in a forked process, and the parts' reward tensors, extra infos and fault counts
    are put back together in order. Batches already scored by a reward model (``rm_scores``) and batches of one
    sample are scored in this process.
    """

    def __init__(self, manager: Any, num_workers: int):
        if num_workers < 1:
            raise ValueError(f"reward_model.num_workers={num_workers} must be >= 1")
        self.manager = manager
        self.num_workers = num_workers
        timeout = getattr(manager, "timeout_s", None)
        self._part_timeout = timeout

    def __getattr__(self, name: str) -> Any:  # tokenizer, num_examine, timeout_s, ... of the wrapped manager
        return getattr(self.__dict__["manager"], name)

    def __call__(self, data: DataProto, return_dict: bool = False) -> torch.Tensor | dict[str, Any]:
        k = min(self.num_workers, len(data))
        if k < 2 or "rm_scores" in data.batch:
            return self.manager(data, return_dict=return_dict)
        bounds = np.linspace(0, len(data), k + 1).astype(int)
        parts = [data.slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        limit = None if self._part_timeout is None else self._part_timeout * max(len(p) for p in parts) + 60
        outcomes = run_calls(partial(_score_part, self.manager), [((p,), {}) for p in parts], num_workers=k,
                             timeout_s=limit, mp_context="fork")
        for i, out in enumerate(outcomes):
            if out.status != "ok":
                detail = f"\n{out.traceback}" if out.traceback else ""
                raise RuntimeError(f"reward-loop worker {i} of {k} (reward_model.num_workers) failed scoring samples "
                                   f"{bounds[i]}..{bounds[i + 1] - 1}: {out.status}: {out.error}{detail}")
        merged = self._merge([o.value for o in outcomes], [len(p) for p in parts])
        return merged if return_dict else merged["reward_tensor"]

    @staticmethod
    def _merge(results: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
        keys = list(dict.fromkeys(k for r in results for k in r.get("reward_extra_info", {})))
        extra = {k: [v for r, n in zip(results, sizes, strict=True)
                     for v in r.get("reward_extra_info", {}).get(k, [None] * n)] for k in keys}
        counts, reported = Counter(), 0
        for r, n in zip(results, sizes, strict=True):
            metrics = r.get("reward_metrics") or {}
            if metrics:
                reported += n
                counts.update({kind: int(metrics.get(f"reward/num_{kind}", 0)) for kind in FAULT_KINDS})
        offsets = np.cumsum([0, *sizes])
        failure = next((dataclasses.replace(r["reward_failure"], index=r["reward_failure"].index + int(offset))
                        for r, offset in zip(results, offsets, strict=False) if r.get("reward_failure") is not None),
                       None)  # its index in the whole batch
        return {"reward_tensor": torch.cat([r["reward_tensor"] for r in results]), "reward_extra_info": extra,
                "reward_metrics": fault_metrics(counts, reported) if reported else {}, "reward_failure": failure}
