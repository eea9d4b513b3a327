"""verl's plug-in contracts: policy losses in both conventions, agg_loss / value loss arguments, config= estimators."""

import numpy as np
import pytest
import torch

from verl.trainer.ppo.core_algos import (
    POLICY_LOSS_REGISTRY,
    ActorLossConfig,
    agg_loss,
    call_adv_estimator,
    compute_policy_loss_vanilla,
    compute_reinforce_plus_plus_outcome_advantage,
    compute_value_loss,
    get_policy_loss_fn,
    register_policy_loss,
)

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_agg_loss_verl_modes_and_arguments():
    assert agg_loss(LOSS, MASK, "token-sum").item() == 10.0
    assert agg_loss(LOSS, MASK, "token-sum", 2).item() == 20.0  # dp_size multiplies
    assert agg_loss(LOSS, MASK, "token-mean", 2, 8).item() == pytest.approx(10 / 8 * 2)
    assert agg_loss(LOSS, MASK, "seq-mean-token-sum", 1, None, 4).item() == pytest.approx(10 / 4)
    assert agg_loss(LOSS, MASK, "seq-mean-token-sum-norm", 1, None, 2, 5).item() == pytest.approx((6 / 5 + 4 / 5) / 2)
    # verl's batch_num_tokens is our global_num_tokens
    assert agg_loss(LOSS, MASK, batch_num_tokens=8).item() == agg_loss(LOSS, MASK, global_num_tokens=8).item()
    with pytest.raises(ValueError, match="not both"):
        agg_loss(LOSS, MASK, batch_num_tokens=8, global_num_tokens=8)
    with pytest.raises(ValueError, match="dp_size=2"):
        agg_loss(LOSS, MASK, "token-mean", 2)
    with pytest.raises(ValueError, match="dp_size=2"):
        agg_loss(LOSS, MASK, "seq-mean-token-mean", 2)


def test_value_loss_takes_verls_positional_arguments():
    vpreds, returns = torch.zeros(2, 3), LOSS.sqrt()
    base, _ = compute_value_loss(vpreds, returns, vpreds, MASK, 0.5, "token-sum")
    scaled, _ = compute_value_loss(vpreds, returns, vpreds, MASK, 0.5, "token-sum", 4)
    assert base.item() == pytest.approx(0.5 * 10) and scaled.item() == pytest.approx(4 * base.item())
    mean, _ = compute_value_loss(vpreds, returns, vpreds, MASK, 0.5, "token-mean", 1, 8)
    assert mean.item() == pytest.approx(0.5 * 10 / 8)


def _inputs():
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(3, 4, generator=gen) - 1.0
    new = old + 0.3 * torch.randn(3, 4, generator=gen)
    adv = torch.randn(3, 1, generator=gen).expand(3, 4).contiguous()
    mask = (torch.arange(4) < torch.tensor([4, 2, 3])[:, None]).float()
    return old, new, adv, mask


def test_builtin_loss_in_verls_convention_equals_keyword_convention():
    old, new, adv, mask = _inputs()
    config = ActorLossConfig(clip_ratio=0.1, clip_ratio_high=0.2)
    loss, metrics = compute_policy_loss_vanilla(old, new, adv, mask, "token-mean", config)
    ref, clipfrac, ppo_kl, lower = get_policy_loss_fn("vanilla")(old, new, adv, mask, cliprange=0.1, cliprange_high=0.2)
    assert loss.item() == pytest.approx(ref.item())
    assert metrics["actor/pg_clipfrac"].item() == pytest.approx(clipfrac.item()) and clipfrac.item() > 0
    assert metrics["actor/ppo_kl"].item() == pytest.approx(ppo_kl.item())
    # verl's global_batch_info: dp_size scales, batch_num_tokens normalises
    info = {"dp_size": 2, "batch_num_tokens": 18, "global_batch_size": 6, "loss_scale_factor": None}
    scaled, _ = compute_policy_loss_vanilla(old, new, adv, mask, "token-mean",
                                            ActorLossConfig(clip_ratio=0.1, clip_ratio_high=0.2, global_batch_info=info))
    assert scaled.item() == pytest.approx(ref.item() * mask.sum().item() / 18 * 2)
    with pytest.raises(ValueError, match="dp_size=2"):
        compute_policy_loss_vanilla(old, new, adv, mask, "token-mean", {"global_batch_info": {"dp_size": 2}})


def test_verl_style_loss_registers_and_serves_both_conventions():
    seen = []

    @register_policy_loss("test_verl_reinforce")
    def verl_reinforce(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                       rollout_is_weights=None):  # fmt: skip
        seen.append(config)
        pg = -advantages * log_prob
        loss = agg_loss(pg, response_mask, loss_agg_mode, **config.global_batch_info)
        return loss, {"actor/ppo_kl": 0.5, "actor/custom": 1.0}

    try:
        old, new, adv, mask = _inputs()
        assert POLICY_LOSS_REGISTRY["test_verl_reinforce"].verl_style
        # the actor's keyword call: config built from the numbers, metrics as 0-d tensors
        loss, clipfrac, ppo_kl, lower = get_policy_loss_fn("test_verl_reinforce")(
            old, new, adv, mask, cliprange=0.3, loss_agg_mode="token-sum", global_num_tokens=9)
        assert loss.item() == pytest.approx((-adv * new * mask).sum().item())
        assert seen[-1].clip_ratio == 0.3 and seen[-1].global_batch_info["batch_num_tokens"] == 9
        assert (clipfrac.item(), ppo_kl.item(), lower.item()) == (0.0, 0.5, 0.0)
        # verl's call passes through untouched
        loss2, metrics = get_policy_loss_fn("test_verl_reinforce")(old, new, adv, mask, "token-sum", ActorLossConfig())
        assert loss2.item() == pytest.approx(loss.item()) and metrics["actor/custom"] == 1.0
    finally:
        POLICY_LOSS_REGISTRY.pop("test_verl_reinforce")


def test_estimators_accept_config():
    rewards = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    mask = torch.ones(2, 2)
    _, ret = compute_reinforce_plus_plus_outcome_advantage(rewards, mask, config={"gamma": 0.5})
    assert ret[:, 0].tolist() == [0.5, 1.0]
    _, ret = compute_reinforce_plus_plus_outcome_advantage(token_level_rewards=rewards, response_mask=mask, gamma=0.5)
    assert ret[:, 0].tolist() == [0.5, 1.0]
    with pytest.raises(TypeError, match="config"):
        compute_reinforce_plus_plus_outcome_advantage(rewards, mask, 0.5)


def test_call_adv_estimator_gives_verl_style_plugins_a_config():
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    got = {}

    @register_adv_est("test_verl_style")
    def estimator(token_level_rewards, response_mask, index, config=None, **kwargs):
        got.update(gamma=config.gamma, norm=config.get("norm_adv_by_std_in_grpo", True), missing=config.get("x", 3))
        return token_level_rewards, token_level_rewards

    try:
        call_adv_estimator("test_verl_style", token_level_rewards=torch.ones(2, 2), response_mask=torch.ones(2, 2),
                           index=np.array(["a", "a"], dtype=object), gamma=0.9, lam=1.0, norm_adv_by_std_in_grpo=False)
        assert got == {"gamma": 0.9, "norm": False, "missing": 3}
    finally:
        ADV_ESTIMATOR_REGISTRY.pop("test_verl_style")
