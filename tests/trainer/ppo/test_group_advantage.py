"""Group (outcome) advantage estimators, each on a small batch worked out by hand.

Groups are interleaved on purpose (uids not contiguous) so grouping by uid, not by position, is tested.
"""

import statistics

import numpy as np
import pytest
import torch

from verl.trainer.ppo.core_algos import (
    compute_gpg_outcome_advantage,
    compute_grpo_outcome_advantage,
    compute_grpo_passk_outcome_advantage,
    compute_opo_outcome_advantage,
    compute_reinforce_plus_plus_baseline_outcome_advantage,
    compute_rloo_outcome_advantage,
    group_ids_from_index,
)


def outcome_batch(scores, lengths, length=3):
    """Rewards on each response's last valid token; right-padded masks of the given lengths."""
    mask = (torch.arange(length) < torch.tensor(lengths)[:, None]).float()
    rewards = torch.zeros(len(scores), length)
    rewards[torch.arange(len(scores)), torch.tensor(lengths) - 1] = torch.tensor(scores)
    return rewards, mask


def per_sample(adv, mask):
    """The advantage of each sample (constant over its valid tokens), checking it is broadcast and masked."""
    first = adv[:, 0]
    torch.testing.assert_close(adv, first[:, None] * mask)
    return first


# uids: a b a c a c  -> a: [1, 0, 0.5], b: [2] (a group of one), c: [3, 3] (all equal)
INDEX = np.array(["a", "b", "a", "c", "a", "c"], dtype=object)
SCORES = [1.0, 2.0, 0.0, 3.0, 0.5, 3.0]


def test_grpo_by_hand():
    rewards, mask = outcome_batch(SCORES, [3, 2, 3, 1, 2, 3])
    adv, ret = compute_grpo_outcome_advantage(rewards, mask, INDEX)
    # a: mean 0.5, unbiased std 0.5 -> [1, -1, 0]; b alone: mean 0, std 1 -> 2; c: std 0 -> 0
    expected = torch.tensor([1.0, 2.0, -1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(per_sample(adv, mask), expected, atol=1e-5, rtol=0)
    assert ret is adv or torch.equal(ret, adv)


def test_dr_grpo_drops_the_std():
    rewards, mask = outcome_batch(SCORES, [3, 2, 3, 1, 2, 3])
    adv, _ = compute_grpo_outcome_advantage(rewards, mask, INDEX, norm_adv_by_std_in_grpo=False)
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.5, 2.0, -0.5, 0.0, 0.0, 0.0]))


def test_grpo_accepts_int_uids_and_tensor_index():
    rewards, mask = outcome_batch([1.0, 0.0, 4.0, 2.0], [3, 3, 3, 3])
    for index in (np.array([7, 7, 9, 9]), torch.tensor([7, 7, 9, 9]), [7, 7, 9, 9]):
        adv, _ = compute_grpo_outcome_advantage(rewards, mask, index, norm_adv_by_std_in_grpo=False)
        torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.5, -0.5, 1.0, -1.0]))


def test_index_length_mismatch_is_a_clear_error():
    rewards, mask = outcome_batch([1.0, 0.0], [3, 3])
    with pytest.raises(ValueError, match="one uid per sample"):
        compute_grpo_outcome_advantage(rewards, mask, np.array(["a"], dtype=object))
    ids, n = group_ids_from_index(np.array(["x", "y", "x"], dtype=object), 3)
    assert ids.tolist() == [0, 1, 0] and n == 2


def test_passk_by_hand():
    # a: [1, 3, 2] -> only the best (3) learns, from 3 - 2 = 1, divided by the unbiased std 1
    # b: [5, 5] tie -> the first best gets 0
    index = np.array(["a", "b", "a", "a", "b"], dtype=object)
    rewards, mask = outcome_batch([1.0, 5.0, 3.0, 2.0, 5.0], [3, 3, 2, 3, 1])
    adv, _ = compute_grpo_passk_outcome_advantage(rewards, mask, index)
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]), atol=1e-5, rtol=0)
    rewards[2, 1] = 7.0  # best of a now 7: margin 5, no std
    adv, _ = compute_grpo_passk_outcome_advantage(rewards, mask, index, norm_adv_by_std_in_grpo=False)
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.0, 0.0, 5.0, 0.0, 0.0]))


def test_passk_needs_two_samples_per_group():
    rewards, mask = outcome_batch([1.0, 2.0, 3.0], [3, 3, 3])
    with pytest.raises(ValueError, match="rollout.n >= 2"):
        compute_grpo_passk_outcome_advantage(rewards, mask, np.array(["a", "a", "b"], dtype=object))


def test_rloo_by_hand():
    rewards, mask = outcome_batch(SCORES, [3, 2, 3, 1, 2, 3])
    adv, _ = compute_rloo_outcome_advantage(rewards, mask, INDEX)
    # a: 1 - mean(0, .5) = .75; 0 - mean(1, .5) = -.75; .5 - mean(1, 0) = 0; b alone: no baseline; c: 0
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.75, 2.0, -0.75, 0.0, 0.0, 0.0]))


def test_reinforce_plus_plus_baseline_by_hand():
    index = np.array(["a", "b", "a", "b"], dtype=object)
    rewards, mask = outcome_batch([1.0, 2.0, 0.0, 4.0], [2, 1, 1, 2], length=2)
    adv, _ = compute_reinforce_plus_plus_baseline_outcome_advantage(rewards, mask, index)
    # group-centred: a -> [.5, -.5], b -> [-1, 1]; then whitened over the 6 valid tokens
    tokens = [0.5, 0.5, -1.0, -0.5, 1.0, 1.0]
    mean, std = statistics.mean(tokens), statistics.stdev(tokens)
    expected = torch.tensor([(v - mean) / std for v in (0.5, -1.0, -0.5, 1.0)])
    torch.testing.assert_close(per_sample(adv, mask), expected, atol=1e-5, rtol=0)


def test_opo_length_weighted_baseline_by_hand():
    index = np.array(["a", "a", "b"], dtype=object)
    rewards, mask = outcome_batch([1.0, 0.0, 2.0], [3, 1, 2])
    adv, _ = compute_opo_outcome_advantage(rewards, mask, index)
    # a: baseline (3 * 1 + 1 * 0) / 4 = 0.75; b alone: baseline 0
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.25, -0.75, 2.0]))


def test_gpg_by_hand_verl_scale():
    # verl's alpha = B / #nonzero scores = 5 / 4; group means a: 0.5, b: 1, c (alone): 0
    index = np.array(["a", "b", "a", "c", "b"], dtype=object)
    rewards, mask = outcome_batch([1.0, 1.0, 0.0, 2.0, 1.0], [3, 3, 3, 3, 3])
    adv, ret = compute_gpg_outcome_advantage(rewards, mask, index)
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.5, 0.0, -0.5, 2.0, 0.0]) * 5 / 4)
    torch.testing.assert_close(adv, ret)
    # the scale depends on how wrong answers score: with -1 instead of 0 every score is nonzero
    rewards_pm, _ = outcome_batch([1.0, 1.0, -1.0, 2.0, 1.0], [3, 3, 3, 3, 3])
    adv, _ = compute_gpg_outcome_advantage(rewards_pm, mask, index)
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([1.0, 0.0, -1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="alpha_from"):
        compute_gpg_outcome_advantage(rewards, mask, index, alpha_from="paper")


def test_gpg_by_hand_informative_groups_option():
    # a: [1, 0] valid; b: [1, 1] all equal -> invalid (M = 2); c alone: valid. alpha = B / (B - M) = 5 / 3
    index = np.array(["a", "b", "a", "c", "b"], dtype=object)
    rewards, mask = outcome_batch([1.0, 1.0, 0.0, 2.0, 1.0], [3, 3, 3, 3, 3])
    adv, _ = compute_gpg_outcome_advantage(rewards, mask, index, alpha_from="informative_groups")
    alpha = 5 / 3
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.5, 0.0, -0.5, 2.0, 0.0]) * alpha)
    adv, _ = compute_gpg_outcome_advantage(rewards, mask, index, f_norm=2.0, alpha_from="informative_groups")
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.5, 0.0, -0.5, 2.0, 0.0]) * alpha / 2)


def test_gpg_all_equal_floats_count_as_invalid():
    # 0.1 + 0.1 + 0.1 is not exactly 3 * 0.1: the all-equal test must not depend on a rounded std
    index = np.array(["a", "a", "a", "b", "b"], dtype=object)
    rewards, mask = outcome_batch([0.1, 0.1, 0.1, 1.0, 0.0], [3] * 5)
    adv, _ = compute_gpg_outcome_advantage(rewards, mask, index, alpha_from="informative_groups")
    torch.testing.assert_close(per_sample(adv, mask), torch.tensor([0.0, 0.0, 0.0, 0.5, -0.5]) * 5 / 2, atol=1e-6, rtol=0)
