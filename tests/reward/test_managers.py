"""Reward managers: rewards land on the last valid response token; failing scorers never stop the run."""

import asyncio
import math
import os
import time

import pytest
import torch

from verl.reward import (
    REWARD_MANAGERS,
    BatchRewardManager,
    DAPORewardManager,
    NaiveRewardManager,
    PrimeRewardManager,
    get_reward_manager_cls,
    overlong_penalty,
    place_rewards,
)
from verl.reward.process_pool import run_calls
from verl.utils.reward_score import UnknownDataSourceError

PROMPTS = ["What is 2 + 3?", "What is 10 * 10?", "What is 7 - 9?", "Say nothing."]
RESPONSES = ["2 + 3 = 5 #### 5", "10 * 10 = 100 #### 100", "#### 3", ""]
TRUTHS = ["5", "100", "-2", "0"]
SOURCES = ["openai/gsm8k"] * 4


def valid_lengths(batch):
    p = batch.batch["prompts"].shape[1]
    return batch.batch["attention_mask"][:, p:].sum(-1).tolist()


def test_registry_names():
    assert {"naive", "batch", "prime", "dapo"} <= set(REWARD_MANAGERS)
    assert get_reward_manager_cls("dapo") is DAPORewardManager
    with pytest.raises(ValueError, match="reward_model.reward_manager"):
        get_reward_manager_cls("nope")


def test_place_rewards_last_valid_token_and_empty_rows():
    out = place_rewards([1.0, 2.0, 3.0], torch.tensor([3, 0, 5]), 5)
    expected = torch.zeros(3, 5)
    expected[0, 2], expected[2, 4] = 1.0, 3.0  # the empty response (length 0) carries nothing
    assert torch.equal(out, expected)


def test_naive_places_default_scores_on_the_last_valid_token(tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, SOURCES, TRUTHS)
    out = NaiveRewardManager(tokenizer)(batch, return_dict=True)
    scores = out["reward_tensor"]
    assert scores.shape == batch.batch["responses"].shape and scores.dtype == torch.float32
    lengths = valid_lengths(batch)
    assert lengths[3] == 0 and min(lengths[:3]) > 0
    expected = torch.zeros_like(scores)
    for i, value in enumerate([1.0, 1.0, 0.0]):  # "#### 3" is wrong for -2
        expected[i, lengths[i] - 1] = value
    assert torch.equal(scores, expected)
    assert out["reward_metrics"] == {"reward/num_errors": 0.0, "reward/num_timeouts": 0.0, "reward/num_invalid": 0.0,
                                     "reward/frac_errors": 0.0, "reward/frac_timeouts": 0.0, "reward/frac_invalid": 0.0,
                                     "reward/frac_unusable": 0.0}
    assert out["reward_failure"] is None


def test_naive_decodes_prompt_and_valid_response_only(tokenizer, rollout_batch):
    seen = []

    def spy(data_source, solution_str, ground_truth, extra_info=None):
        seen.append((data_source, solution_str, ground_truth, extra_info))
        return 0.0

    batch = rollout_batch(tokenizer, PROMPTS[:2], RESPONSES[:2], ["a", "b"], TRUTHS[:2])
    NaiveRewardManager(tokenizer, compute_score=spy)(batch)
    # EOS and padding are cut: exactly the response text comes back
    # verl's extra_info: the row's dict plus num_turns and rollout_reward_scores
    extra = {"num_turns": None, "rollout_reward_scores": {}}
    assert seen == [("a", RESPONSES[0], "5", {"index": 0, **extra}), ("b", RESPONSES[1], "100", {"index": 1, **extra})]


def flaky(data_source, solution_str, ground_truth, extra_info=None):
    i = extra_info["index"]
    if i == 0:
        raise RuntimeError("scorer bug")
    return [float("nan"), "garbage", {"no_score": 1}, {"score": 0.5, "acc": True}, 1, True][i - 1]


def test_naive_survives_raising_and_garbage_scores(tokenizer, rollout_batch):
    n = 7
    batch = rollout_batch(tokenizer, ["q"] * n, ["#### 1"] * n, ["x"] * n, ["1"] * n)
    out = NaiveRewardManager(tokenizer, compute_score=flaky)(batch, return_dict=True)
    last = [l - 1 for l in valid_lengths(batch)]
    rewards = [out["reward_tensor"][i, last[i]].item() for i in range(n)]
    assert rewards == [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert out["reward_metrics"]["reward/num_errors"] == 1
    assert out["reward_metrics"]["reward/num_invalid"] == 3  # NaN, a string, a dict without "score"
    # dict fields are logged per sample, None where a sample gave none
    assert out["reward_extra_info"]["acc"] == [None, None, None, None, True, None, None]
    assert out["reward_extra_info"]["score"][4] == 0.5
    with pytest.raises(RuntimeError, match="scorer bug"):
        NaiveRewardManager(tokenizer, compute_score=flaky, on_error="raise")(batch)


def test_unknown_data_source_is_raised_not_zeroed(tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, ["q"], ["a"], ["my/new_dataset"], ["1"])
    with pytest.raises(UnknownDataSourceError, match="custom_reward_function.path"):
        NaiveRewardManager(tokenizer)(batch)


def test_missing_columns_are_named(tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, ["q"], ["a"], ["x"], ["1"])
    with pytest.raises(KeyError, match="reward_fn_key"):
        NaiveRewardManager(tokenizer, compute_score=flaky, reward_fn_key="source")(batch)
    batch.non_tensor_batch["reward_model"][0] = {"style": "rule"}
    with pytest.raises(ValueError, match="ground_truth"):
        NaiveRewardManager(tokenizer, compute_score=flaky)(batch)


def test_rm_scores_pass_through(tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, SOURCES, TRUTHS)
    batch.batch["rm_scores"] = torch.full(batch.batch["responses"].shape, 0.25)
    assert torch.equal(NaiveRewardManager(tokenizer)(batch), batch.batch["rm_scores"])


def test_naive_runs_async_scores_concurrently(tokenizer, rollout_batch):
    async def slow(data_source, solution_str, ground_truth, extra_info=None):
        await asyncio.sleep(0.3)
        return float(solution_str == ground_truth)

    n = 8
    batch = rollout_batch(tokenizer, ["q"] * n, ["yes"] * 4 + ["no"] * 4, ["x"] * n, ["yes"] * n)
    start = time.monotonic()
    scores = NaiveRewardManager(tokenizer, compute_score=slow)(batch)
    assert time.monotonic() - start < 0.3 * n / 2  # concurrent, not 8 x 0.3 s
    assert scores.sum(-1).tolist() == [1.0] * 4 + [0.0] * 4


def test_num_examine_prints_per_data_source(tokenizer, rollout_batch, capsys):
    batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, ["a", "a", "b", "a"], TRUTHS)
    NaiveRewardManager(tokenizer, num_examine=1, compute_score=lambda **kw: 1.0)(batch)
    printed = capsys.readouterr().out
    assert printed.count("[data_source] a") == 1 and printed.count("[data_source] b") == 1
    assert f"[response] {RESPONSES[0]}" in printed and "[score] 1.0" in printed


# ---------------------------------------------------------------------------------------------- batch


def test_batch_manager_calls_once(tokenizer, rollout_batch):
    calls = []

    def batched(data_sources, solution_strs, ground_truths, extra_infos, bonus=0.0):
        calls.append(len(solution_strs))
        return [{"score": float(s.endswith(g)) + bonus, "n": len(s)} for s, g in zip(solution_strs, ground_truths)]

    batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, SOURCES, TRUTHS)
    out = BatchRewardManager(tokenizer, compute_score=batched, bonus=0.5)(batch, return_dict=True)
    assert calls == [4]
    assert out["reward_tensor"].sum(-1).tolist() == [1.5, 1.5, 0.5, 0.0]  # the empty response carries nothing
    assert out["reward_extra_info"]["n"] == [len(r) for r in RESPONSES]


def test_batch_manager_survives_bad_returns(tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, SOURCES, TRUTHS)
    for bad in (lambda **kw: [1.0], lambda **kw: 3.0, lambda **kw: 1 / 0):
        out = BatchRewardManager(tokenizer, compute_score=bad)(batch, return_dict=True)
        assert out["reward_tensor"].abs().sum() == 0
        assert out["reward_metrics"]["reward/num_errors"] == 4

    async def async_batched(data_sources, solution_strs, ground_truths, extra_infos):
        return [1.0] * len(solution_strs)

    assert BatchRewardManager(tokenizer, compute_score=async_batched)(batch).sum() == 3.0
    with pytest.raises(ValueError, match="custom_reward_function"):
        BatchRewardManager(tokenizer)


# ---------------------------------------------------------------------------------------------- prime


def hostile(data_source, solution_str, ground_truth, extra_info=None):
    mode = solution_str.strip()
    if mode == "hang":
        time.sleep(60)
    if mode == "raise":
        raise ValueError("bad input")
    if mode == "crash":
        os._exit(3)
    if mode == "garbage":
        return object()
    if mode == "unpicklable":
        return lambda: 1.0
    return 1.0


def test_prime_survives_hangs_raises_crashes_and_garbage(tokenizer, rollout_batch):
    modes = ["ok", "hang", "ok", "raise", "crash", "garbage", "unpicklable", "ok", "ok"]
    batch = rollout_batch(tokenizer, ["q"] * len(modes), modes, ["x"] * len(modes), ["1"] * len(modes))
    manager = PrimeRewardManager(tokenizer, compute_score=hostile, num_workers=2, timeout_s=1.0)
    start = time.monotonic()
    out = manager(batch, return_dict=True)
    assert time.monotonic() - start < 5.0  # the hung call was killed at its timeout
    per_sample = out["reward_tensor"].sum(-1).tolist()
    assert per_sample == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    metrics = out["reward_metrics"]
    assert metrics["reward/num_timeouts"] == 1
    assert metrics["reward/num_errors"] == 3  # raise, crash, and a result that cannot be sent back
    assert metrics["reward/num_invalid"] == 1  # a result that is not a number


def test_prime_matches_naive_and_raises_config_errors(tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, SOURCES, TRUTHS)
    naive = NaiveRewardManager(tokenizer)(batch)
    assert torch.equal(PrimeRewardManager(tokenizer, num_workers=2, timeout_s=30)(batch), naive)
    unknown = rollout_batch(tokenizer, ["q"], ["a"], ["my/new_dataset"], ["1"])
    with pytest.raises(UnknownDataSourceError):
        PrimeRewardManager(tokenizer, num_workers=1)(unknown)


def test_run_calls_async_and_order():
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    outcomes = run_calls(double, [((i,), {}) for i in range(5)], num_workers=2, timeout_s=10)
    assert [o.value for o in outcomes] == [0, 2, 4, 6, 8] and {o.status for o in outcomes} == {"ok"}
    assert run_calls(double, [], timeout_s=1) == []
    with pytest.raises(ValueError, match="timeout_s"):
        run_calls(double, [((1,), {})], timeout_s=0)


# ---------------------------------------------------------------------------------------------- dapo


def test_overlong_penalty_formula():
    # L_max = 20, buffer 8: free up to 12 tokens, then linear down to -penalty at 20
    assert overlong_penalty(12, 20, 8, 1.0) == 0.0
    assert overlong_penalty(16, 20, 8, 1.0) == -0.5
    assert overlong_penalty(20, 20, 8, 2.0) == -2.0
    assert overlong_penalty(3, 20, 8, 1.0) == 0.0


def test_dapo_adds_overlong_penalty(tokenizer, rollout_batch):
    short, long = "#### 5", "one two three four five six seven eight nine ten eleven twelve #### 5"
    batch = rollout_batch(tokenizer, ["q", "q"], [short, long], ["openai/gsm8k"] * 2, ["5", "5"], response_len=16)
    lengths = valid_lengths(batch)
    cfg = {"enable": True, "len": 8, "penalty_factor": 1.0, "log": True}
    always_right = lambda **kw: 1.0  # noqa: E731  (the long response is truncated; only the penalty matters here)
    dapo = DAPORewardManager(tokenizer, compute_score=always_right, max_resp_len=16, overlong_buffer_cfg=cfg)
    out = dapo(batch, return_dict=True)
    expected = [1.0 + overlong_penalty(n, 16, 8, 1.0) for n in lengths]
    assert lengths[1] == 16 and expected[1] == 0.0  # hit the limit: 1 - 1
    got = [out["reward_tensor"][i, lengths[i] - 1].item() for i in range(2)]
    assert got == pytest.approx(expected)
    assert out["reward_extra_info"]["overlong"] == [lengths[0] > 8, True]
    plain = DAPORewardManager(tokenizer, compute_score=always_right)(batch)  # buffer disabled: plain scores
    assert plain.sum(-1).tolist() == [1.0, 1.0]


def test_dapo_config_errors(tokenizer):
    with pytest.raises(ValueError, match="max_resp_len"):
        DAPORewardManager(tokenizer, overlong_buffer_cfg={"enable": True, "len": 4})
    with pytest.raises(ValueError, match="overlong_buffer.len"):
        DAPORewardManager(tokenizer, max_resp_len=8, overlong_buffer_cfg={"enable": True, "len": 16})
    with pytest.raises(ValueError, match="unknown config key reward_model.overlong_buffer.enabled"):
        DAPORewardManager(tokenizer, max_resp_len=8, overlong_buffer_cfg={"enabled": True})
    assert math.isclose(overlong_penalty(7, 8, 4, 1.0), -0.75)


@pytest.mark.gpu
def test_rewards_for_a_batch_on_the_accelerator(tokenizer, rollout_batch):
    from verl.utils.device import get_device

    cpu_batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, SOURCES, TRUTHS)
    expected = NaiveRewardManager(tokenizer)(cpu_batch)
    batch = rollout_batch(tokenizer, PROMPTS, RESPONSES, SOURCES, TRUTHS).to(get_device())
    for manager in (NaiveRewardManager(tokenizer), PrimeRewardManager(tokenizer, num_workers=2, timeout_s=30)):
        scores = manager(batch)
        assert scores.device == batch.batch["responses"].device
        assert torch.equal(scores.cpu(), expected)
