"""Token-level advantage estimators (GAE, REINFORCE++, ReMax) and the estimator registry."""

import math
import statistics

import numpy as np
import pytest
import torch

from verl.trainer.ppo.core_algos import (
    ADV_ESTIMATOR_REGISTRY,
    AdvantageEstimator,
    call_adv_estimator,
    compute_gae_advantage_return,
    compute_reinforce_plus_plus_outcome_advantage,
    compute_remax_outcome_advantage,
    get_adv_estimator_fn,
    register_adv_est,
)


def test_gae_by_hand_skips_masked_token():
    # valid tokens 0 and 2; token 1 (e.g. a tool output) is skipped, its reward and value ignored
    rewards = torch.tensor([[0.0, 5.0, 1.0]])
    values = torch.tensor([[0.5, 9.0, 0.2]])
    mask = torch.tensor([[1, 0, 1]])
    adv, ret = compute_gae_advantage_return(rewards, values, mask, gamma=0.9, lam=0.8)
    a2 = 1.0 - 0.2  # delta at the last token
    a0 = (0.0 + 0.9 * 0.2 - 0.5) + 0.9 * 0.8 * a2  # next value is token 2's
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5, 0.0, a2 + 0.2]]))
    # whitening two values gives -+1/sqrt(2) (unbiased std)
    torch.testing.assert_close(adv, torch.tensor([[-1 / math.sqrt(2), 0.0, 1 / math.sqrt(2)]]), atol=1e-5, rtol=0)


def _gae_reference(rewards, values, mask, gamma, lam):
    """Slow per-sample loop over the valid tokens only."""
    raw = torch.zeros_like(values, dtype=torch.float64)
    for b in range(values.shape[0]):
        valid = [t for t in range(values.shape[1]) if mask[b, t]]
        running, next_value = 0.0, 0.0
        for t in reversed(valid):
            delta = float(rewards[b, t]) + gamma * next_value - float(values[b, t])
            running = delta + gamma * lam * running
            raw[b, t] = running
            next_value = float(values[b, t])
    returns = (raw + values.double()) * mask
    flat = [float(raw[b, t]) for b in range(raw.shape[0]) for t in range(raw.shape[1]) if mask[b, t]]
    mean, std = statistics.mean(flat), statistics.stdev(flat)
    return ((raw - mean) / std) * mask, returns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_slow_reference_on_random_masks(seed):
    gen = torch.Generator().manual_seed(seed)
    batch, length = 5, 9
    rewards = torch.randn(batch, length, generator=gen, dtype=torch.float64)
    values = torch.randn(batch, length, generator=gen, dtype=torch.float64)
    mask = (torch.rand(batch, length, generator=gen) > 0.35).long()  # holes anywhere, as in multi-turn
    mask[:, 0] = 1
    adv, ret = compute_gae_advantage_return(rewards, values, mask, gamma=0.97, lam=0.9)
    ref_adv, ref_ret = _gae_reference(rewards, values, mask, 0.97, 0.9)
    torch.testing.assert_close(ret, ref_ret)
    torch.testing.assert_close(adv, ref_adv, atol=1e-6, rtol=1e-6)


def test_reinforce_plus_plus_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 2.0, 7.0], [0.0, 3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # the 7.0 is padding after EOS: must not leak
    adv, ret = compute_reinforce_plus_plus_outcome_advantage(rewards, mask, gamma=0.5)
    torch.testing.assert_close(ret, torch.tensor([[1.5, 1.0, 2.0, 0.0], [1.5, 3.0, 0.0, 0.0]]))
    valid = [1.5, 1.0, 2.0, 1.5, 3.0]
    mean, std = statistics.mean(valid), statistics.stdev(valid)
    expected = torch.tensor([[(v - mean) / std for v in (1.5, 1.0, 2.0)] + [0.0], [(1.5 - mean) / std, (3.0 - mean) / std, 0, 0]])
    torch.testing.assert_close(adv, expected, atol=1e-5, rtol=0)


def test_remax_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = compute_remax_outcome_advantage(rewards, torch.tensor([0.5, 1.0]), mask)
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]]))
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="reward_baselines"):
        compute_remax_outcome_advantage(rewards, torch.tensor([0.5]), mask)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="batch, response_len"):
        compute_gae_advantage_return(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3), gamma=1.0, lam=1.0)


def test_every_builtin_is_registered_under_its_enum_name():
    assert set(ADV_ESTIMATOR_REGISTRY) >= {e.value for e in AdvantageEstimator}
    assert get_adv_estimator_fn(AdvantageEstimator.GAE) is compute_gae_advantage_return
    assert get_adv_estimator_fn("remax") is compute_remax_outcome_advantage


def test_unknown_estimator_lists_known_ones():
    with pytest.raises(ValueError, match="unknown advantage estimator 'nope'.*'grpo'"):
        get_adv_estimator_fn("nope")


def test_user_plugin_by_name_and_duplicate_rejected():
    @register_adv_est("test_constant_one")
    def constant_one(token_level_rewards, response_mask, index, config=None):
        adv = torch.ones_like(token_level_rewards) * response_mask
        return adv, adv

    try:
        assert get_adv_estimator_fn("test_constant_one") is constant_one
        register_adv_est("test_constant_one")(constant_one)  # same function again: fine
        with pytest.raises(ValueError, match="already registered"):
            register_adv_est("test_constant_one")(lambda **kw: None)
        mask = torch.tensor([[1, 0]])
        adv, _ = call_adv_estimator(
            "test_constant_one", token_level_rewards=torch.zeros(1, 2), response_mask=mask,
            index=np.array(["u"], dtype=object), values=None, gamma=1.0, lam=1.0,
        )  # fmt: skip
        torch.testing.assert_close(adv, torch.tensor([[1.0, 0.0]]))
    finally:
        ADV_ESTIMATOR_REGISTRY.pop("test_constant_one")


def test_call_adv_estimator_passes_what_each_declares():
    rewards = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    mask = torch.ones(2, 2)
    available = dict(
        token_level_rewards=rewards, response_mask=mask, values=torch.zeros(2, 2), gamma=1.0, lam=1.0,
        index=np.array(["a", "a"], dtype=object), norm_adv_by_std_in_grpo=False,
    )  # fmt: skip
    adv, _ = call_adv_estimator("grpo", **available)
    torch.testing.assert_close(adv, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    _, ret = call_adv_estimator(AdvantageEstimator.GAE, **available)
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0], [3.0, 3.0]]))
    with pytest.raises(ValueError, match="needs \\['reward_baselines'\\]"):
        call_adv_estimator("remax", **available)
