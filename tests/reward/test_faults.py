"""Reward faults: every kind of failing scorer is counted, every call is bounded by the time limit, and a run
whose rewards are all unusable stops with one failing sample and its exception."""

import asyncio
import threading
import time

import pytest

from verl.reward import (
    DEFAULT_TIMEOUT_S,
    BatchRewardManager,
    DAPORewardManager,
    NaiveRewardManager,
    PrimeRewardManager,
    RewardFaultError,
    RewardFaultTracker,
    score_batch,
)
from verl.reward.batch import BATCH_TIMEOUT_S


def batch_of(tokenizer, rollout_batch, modes):
    n = len(modes)
    return rollout_batch(tokenizer, ["q"] * n, modes, ["src"] * n, ["1"] * n)


def faulty(data_source, solution_str, ground_truth, extra_info=None):
    """One fault per response text: what a buggy scorer does."""
    mode = solution_str.strip()
    if mode == "raise":
        return 1 / 0
    if mode == "nan":
        return float("nan")
    if mode == "inf":
        return float("inf")
    if mode == "string":
        return "1.0"
    if mode == "dict":
        return {"acc": 1.0}  # no "score"
    if mode == "none":
        return None
    if mode == "sleep":
        time.sleep(120)
    if mode == "hang":
        threading.Event().wait()
    if mode == "spin":
        while True:
            pass
    if mode == "stubborn":  # swallows what it can and keeps sleeping
        while True:
            try:
                time.sleep(120)
            except Exception:
                pass
    return 1.0


MODES = ["ok", "raise", "nan", "inf", "string", "dict", "none", "ok"]


def test_every_fault_kind_is_counted_with_fractions(tokenizer, rollout_batch):
    out = NaiveRewardManager(tokenizer, compute_score=faulty)(batch_of(tokenizer, rollout_batch, MODES), return_dict=True)
    m = out["reward_metrics"]
    assert (m["reward/num_errors"], m["reward/num_timeouts"], m["reward/num_invalid"]) == (1, 0, 5)
    assert m["reward/frac_errors"] == pytest.approx(1 / 8) and m["reward/frac_invalid"] == pytest.approx(5 / 8)
    assert m["reward/frac_unusable"] == pytest.approx(6 / 8) and m["reward/frac_timeouts"] == 0
    assert out["reward_tensor"].sum(-1).tolist() == [1.0, 0, 0, 0, 0, 0, 0, 1.0]
    failure = out["reward_failure"]  # the first unusable sample, with its exception and traceback
    assert failure.index == 1 and failure.kind == "error" and failure.solution == "raise"
    assert failure.message.startswith("ZeroDivisionError") and "return 1 / 0" in failure.traceback
    text = failure.describe()
    assert "sample 1" in text and "data_source='src'" in text and "ZeroDivisionError" in text


@pytest.mark.parametrize("mode", ["sleep", "hang", "spin", "stubborn"])
def test_a_stalled_scorer_costs_at_most_the_limit(tokenizer, rollout_batch, mode):
    manager = NaiveRewardManager(tokenizer, compute_score=faulty, timeout_s=1.0)
    start = time.monotonic()
    out = manager(batch_of(tokenizer, rollout_batch, ["ok", mode, "ok"]), return_dict=True)
    assert time.monotonic() - start < 3.0, "the stalled call was not cut at its 1 s limit"
    assert out["reward_metrics"]["reward/num_timeouts"] == 1
    assert out["reward_tensor"].sum(-1).tolist() == [1.0, 0.0, 1.0]  # the others still scored
    assert out["reward_failure"].kind == "timeout" and "timeout_s" in out["reward_failure"].message


def test_every_manager_has_a_time_limit_by_default(tokenizer):
    for cls in (NaiveRewardManager, DAPORewardManager, PrimeRewardManager):
        assert cls(tokenizer).timeout_s == DEFAULT_TIMEOUT_S == 60.0
    assert BatchRewardManager(tokenizer, compute_score=lambda **kw: []).timeout_s == BATCH_TIMEOUT_S
    assert NaiveRewardManager(tokenizer, timeout_s=0).timeout_s is None  # 0 / None: no limit
    assert NaiveRewardManager(tokenizer, timeout_s=None).timeout_s is None
    for bad in (-1, "soon", True):
        with pytest.raises(ValueError, match="reward_kwargs.timeout_s"):
            NaiveRewardManager(tokenizer, timeout_s=bad)


def test_async_scorer_is_bounded(tokenizer, rollout_batch):
    async def slow(data_source, solution_str, ground_truth, extra_info=None):
        if solution_str == "hang":
            await asyncio.Event().wait()
        return 1.0

    manager = NaiveRewardManager(tokenizer, compute_score=slow, timeout_s=1.0)
    start = time.monotonic()
    out = manager(batch_of(tokenizer, rollout_batch, ["ok", "hang", "hang", "ok"]), return_dict=True)
    assert time.monotonic() - start < 3.0  # concurrent: both hangs cut at once
    assert out["reward_metrics"]["reward/num_timeouts"] == 2 and out["reward_tensor"].sum() == 2.0


def test_batch_manager_call_is_bounded(tokenizer, rollout_batch):
    def stuck(data_sources, solution_strs, ground_truths, extra_infos):
        time.sleep(120)

    manager = BatchRewardManager(tokenizer, compute_score=stuck, timeout_s=1.0)
    start = time.monotonic()
    out = manager(batch_of(tokenizer, rollout_batch, ["a", "b", "c"]), return_dict=True)
    assert time.monotonic() - start < 3.0
    assert out["reward_metrics"]["reward/num_timeouts"] == 3 and out["reward_metrics"]["reward/frac_unusable"] == 1.0


def test_prime_uses_the_same_limit(tokenizer, rollout_batch):
    manager = PrimeRewardManager(tokenizer, compute_score=faulty, num_workers=2, timeout_s=1.0)
    start = time.monotonic()
    out = manager(batch_of(tokenizer, rollout_batch, ["ok", "sleep", "raise", "nan"]), return_dict=True)
    assert time.monotonic() - start < 5.0
    m = out["reward_metrics"]
    assert (m["reward/num_timeouts"], m["reward/num_errors"], m["reward/num_invalid"]) == (1, 1, 1)
    errors = [f for f in [out["reward_failure"]] if f is not None]
    assert errors and errors[0].index == 1 and errors[0].kind == "timeout"


def test_tracker_counts_a_step_and_stops_after_consecutive_unusable_steps(tokenizer, rollout_batch):
    manager = NaiveRewardManager(tokenizer, compute_score=faulty)
    good = batch_of(tokenizer, rollout_batch, ["ok", "nan"])
    bad = batch_of(tokenizer, rollout_batch, ["raise", "nan", "dict"])
    tracker = RewardFaultTracker(max_failed_steps=2)
    tracker.begin_step()
    tracker.add(score_batch(good, manager))
    tracker.add(score_batch(bad, manager))  # a step may score several generation batches (DAPO)
    m = tracker.metrics()
    assert (m["reward/num_errors"], m["reward/num_invalid"]) == (1, 3)
    assert m["reward/frac_unusable"] == pytest.approx(4 / 5)
    tracker.begin_step()
    tracker.add(score_batch(good, manager))  # a usable reward resets the run of failures
    tracker.add(score_batch(bad, manager))
    with pytest.raises(RewardFaultError) as err:
        tracker.add(score_batch(bad, manager))
    text = str(err.value)
    assert "no usable reward in 2 consecutive training step(s)" in text
    assert "trainer.max_failed_reward_steps=2" in text
    assert "sample 0" in text and "ZeroDivisionError" in text and "return 1 / 0" in text  # sample, exception, trace
    never = RewardFaultTracker(max_failed_steps=0)
    for _ in range(5):
        never.add(score_batch(bad, manager))


def test_score_batch_of_a_plain_callable_reports_nothing(tokenizer, rollout_batch):
    import torch

    batch = batch_of(tokenizer, rollout_batch, ["a"])
    result = score_batch(batch, lambda data: torch.zeros_like(data.batch["responses"], dtype=torch.float32))
    assert result.num_samples == 0 and result.num_unusable == 0
    tracker = RewardFaultTracker(1)
    tracker.add(result)
    assert tracker.metrics() == {}
