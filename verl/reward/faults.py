"""Reward faults across a run: per-step counts for the loggers, and a stop when no reward is usable.

A reward manager reports, for each batch it scores, how many samples raised (``errors``), ran past the time
limit (``timeouts``) or returned no finite number (``invalid``), and the first such sample
(:class:`~verl.reward.base.RewardFailure`). :class:`RewardFaultTracker` adds these up over a training step
(which may score several generation batches) into ``reward/num_*`` and ``reward/frac_*`` metrics, and raises
:class:`RewardFaultError` when every sample of ``max_failed_steps`` consecutive scoring rounds was unusable: such
a run would otherwise train on all-zero rewards (zero advantages, nothing learned) and exit 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from verl.protocol import DataProto
from verl.reward.base import FAULT_KINDS, RewardFailure, fault_metrics

__all__ = ["RewardFaultError", "RewardFaultTracker", "RewardResult", "score_batch"]


class RewardFaultError(RuntimeError):
    """Every reward of several consecutive training steps was unusable; the message shows one failing sample."""


@dataclass
class RewardResult:
    """What one reward-manager call gave: scores, extra info, fault counts and the first failing sample."""

    reward_tensor: torch.Tensor
    extra: dict[str, list[Any]]
    counts: Counter = field(default_factory=Counter)
    num_samples: int = 0
    failure: RewardFailure | None = None

    @property
    def num_unusable(self) -> int:
        return sum(self.counts.get(k, 0) for k in FAULT_KINDS)


def score_batch(data: DataProto, reward_fn: Any) -> RewardResult:
    """Call a reward manager (or any callable following its contract) on ``data`` and collect what it reports.

    A callable without ``return_dict`` support, or one that reports no fault counts, gives zero counts.
    """
    try:
        out = reward_fn(data, return_dict=True)
    except TypeError:
        return RewardResult(reward_fn(data), {})
    if not isinstance(out, dict):
        return RewardResult(out, {})
    metrics = out.get("reward_metrics") or {}
    counts = Counter({k: int(metrics.get(f"reward/num_{k}", 0)) for k in FAULT_KINDS})
    return RewardResult(out["reward_tensor"], out.get("reward_extra_info", {}), counts,
                        len(data) if metrics else 0, out.get("reward_failure"))


class RewardFaultTracker:
    """Counts reward faults per step and stops the run after ``max_failed_steps`` all-unusable rounds in a row.

    Args:
        max_failed_steps: consecutive scoring rounds (training steps; each generation batch of a DAPO
            dynamic-sampling step counts as one) in which every sample was unusable before
            :meth:`add` raises :class:`RewardFaultError`; ``0`` never stops.
        prefix: the metric-name prefix (``reward/``; validation uses ``val-aux/reward/``).
    """

    def __init__(self, max_failed_steps: int = 0, prefix: str = "reward/"):
        if max_failed_steps < 0:
            raise ValueError(f"max_failed_steps must be >= 0, got {max_failed_steps}")
        self.max_failed_steps = max_failed_steps
        self.prefix = prefix
        self.consecutive_failed = 0
        self._counts: Counter = Counter()
        self._samples = 0
        self._reported = False

    def begin_step(self) -> None:
        """Start a new step's counts."""
        self._counts, self._samples, self._reported = Counter(), 0, False

    def add(self, result: RewardResult) -> None:
        """Count one scored batch; raise when it makes ``max_failed_steps`` all-unusable rounds in a row."""
        self._reported = self._reported or bool(result.num_samples)
        self._counts.update(result.counts)
        self._samples += result.num_samples
        if not result.num_samples:
            return
        if result.num_unusable < result.num_samples:
            self.consecutive_failed = 0
            return
        self.consecutive_failed += 1
        if self.max_failed_steps and self.consecutive_failed >= self.max_failed_steps:
            raise RewardFaultError(self.describe(result))

    def describe(self, result: RewardResult) -> str:
        counts = ", ".join(f"{result.counts.get(k, 0)} {k}" for k in FAULT_KINDS)
        lines = [
            f"no usable reward in {self.consecutive_failed} consecutive training step(s) "
            f"(trainer.max_failed_reward_steps={self.max_failed_steps}): all {result.num_samples} samples of the "
            f"last batch were unusable ({counts}); the score function raised, ran past "
            "reward_model.reward_kwargs.timeout_s, or returned no finite number. Training on them would learn "
            "nothing, so the run stops.",
        ]
        if result.failure is not None:
            lines.append("first failing " + result.failure.describe())
        return "\n".join(lines)

    def metrics(self) -> dict[str, float]:
        """This step's ``{prefix}num_*`` / ``{prefix}frac_*`` (empty when no manager reported counts)."""
        if not self._reported:
            return {}
        return fault_metrics(self._counts, self._samples, self.prefix)
