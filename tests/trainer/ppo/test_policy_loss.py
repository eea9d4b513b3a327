"""Policy losses: hand-computed values, gradients where clipping decides them, registry, invariance."""

import inspect
import math

import pytest
import torch

from verl.trainer.ppo.core_algos import (
    LOSS_AGG_MODES,
    POLICY_LOSS_PARAMS,
    POLICY_LOSS_REGISTRY,
    agg_loss_counts,
    compute_policy_loss,
    compute_tis_weights,
    get_policy_loss_fn,
    register_policy_loss,
)


def tokens(ratios, advantages, log_prob=None):
    """One sequence whose tokens have the given ratios; returns (old, log_prob leaf, adv, mask)."""
    log_prob = torch.tensor([log_prob or [-1.0] * len(ratios)], requires_grad=True)
    old = log_prob.detach() - torch.log(torch.tensor([ratios]))
    return old, log_prob, torch.tensor([advantages]), torch.ones(1, len(ratios))


def test_vanilla_ppo_by_hand_with_dual_clip():
    # 1: A>0, r=1.5 > 1+eps: clipped at 1.2, no gradient     2: A>0, r=0.5: unclipped (pessimistic side)
    # 3: A<0, r=1.5: loss 1.5 < c=3, unclipped                4: A<0, r=4 > c: dual-clip binds at 3, no gradient
    old, lp, adv, mask = tokens([1.5, 0.5, 1.5, 4.0], [1.0, 1.0, -1.0, -1.0])
    pg_loss, clipfrac, ppo_kl, clipfrac_lower = compute_policy_loss(old, lp, adv, mask, cliprange=0.2, clip_ratio_c=3.0)
    assert pg_loss.item() == pytest.approx((-1.2 - 0.5 + 1.5 + 3.0) / 4)
    assert clipfrac.item() == pytest.approx(0.25) and clipfrac_lower.item() == pytest.approx(0.25)
    assert ppo_kl.item() == pytest.approx(-sum(map(math.log, [1.5, 0.5, 1.5, 4.0])) / 4)
    pg_loss.backward()
    # d(-A r)/d log_prob = -A r where unclipped, 0 where a clip binds
    torch.testing.assert_close(lp.grad, torch.tensor([[0.0, -0.5, 1.5, 0.0]]) / 4)


def test_clip_higher_is_asymmetric():
    # r = 1.5 with A > 0 survives a high bound of 0.6; r = 0.7 with A < 0 is still clipped at 1 - 0.2
    old, lp, adv, mask = tokens([1.5, 0.7], [1.0, -1.0])
    pg_loss, clipfrac, _, _ = compute_policy_loss(old, lp, adv, mask, cliprange_low=0.2, cliprange_high=0.6)
    assert pg_loss.item() == pytest.approx((-1.5 + 0.8) / 2)
    assert clipfrac.item() == pytest.approx(0.5)
    pg_loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-1.5, 0.0]]) / 2)


def test_bad_numbers_are_clear_errors():
    old, lp, adv, mask = tokens([1.0], [1.0])
    with pytest.raises(ValueError, match="clip_ratio_c must be > 1"):
        compute_policy_loss(old, lp, adv, mask, clip_ratio_c=1.0)
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        compute_policy_loss(old, lp, adv, mask, loss_agg_mode="sum")
    with pytest.raises(ValueError, match="batch, response_len"):
        compute_policy_loss(old, lp, adv[:, :0], mask)
    # verl's positional order is verl's convention: (loss, metrics), not a misplaced cliprange
    loss, metrics = get_policy_loss_fn("gpg")(old, lp, adv, mask, "seq-mean-token-mean")
    assert set(metrics) == {"actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"}


def test_extreme_log_ratio_stays_finite():
    old, lp, adv, mask = tokens([1.0, 1.0], [1.0, -1.0])
    pg_loss, *_ = compute_policy_loss(old - 100.0, lp, adv, mask)  # ratio e^100 without the clamp
    assert torch.isfinite(pg_loss)


def test_gspo_uses_one_ratio_per_sequence():
    old, lp, adv, mask = tokens([math.exp(0.2), math.exp(-0.4)], [1.0, 1.0])
    fn = get_policy_loss_fn("gspo")
    pg_loss, clipfrac, _, _ = fn(old, lp, adv, mask, cliprange=0.2)
    s = math.exp(-0.1)  # exp(mean token log-ratio)
    assert pg_loss.item() == pytest.approx(-s)
    assert clipfrac.item() == 0.0
    pg_loss.backward()
    torch.testing.assert_close(lp.grad, torch.full((1, 2), -s / 2))  # every token carries the sequence ratio

    old, lp, adv, mask = tokens([math.exp(0.5), math.exp(0.5)], [1.0, 1.0])
    pg_loss, clipfrac, _, _ = fn(old, lp, adv, mask, cliprange=0.2)
    assert pg_loss.item() == pytest.approx(-1.2) and clipfrac.item() == 1.0
    pg_loss.backward()
    torch.testing.assert_close(lp.grad, torch.zeros(1, 2))


def test_gpg_is_plain_policy_gradient():
    old, lp, adv, mask = tokens([2.0, 0.1], [2.0, -1.0], log_prob=[-0.5, -2.0])
    pg_loss, clipfrac, _, lower = get_policy_loss_fn("gpg")(old, lp, adv, mask)
    assert pg_loss.item() == pytest.approx((2.0 * 0.5 + -1.0 * 2.0) / 2)
    assert clipfrac.item() == 0.0 and lower.item() == 0.0
    pg_loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-2.0, 1.0]]) / 2)


def test_geo_mean_by_hand():
    fn = get_policy_loss_fn("geo_mean")
    # A > 0: log-ratios 0.1, 0.6 -> 0.6 clipped to 0.4; rho = exp((0.1 + 0.4) / 2)
    old, lp, adv, mask = tokens([math.exp(0.1), math.exp(0.6)], [1.0, 1.0])
    pg_loss, clipfrac, _, lower = fn(old, lp, adv, mask, cliprange=0.4)
    assert pg_loss.item() == pytest.approx(-math.exp(0.25))
    assert clipfrac.item() == 0.5 and lower.item() == 0.0
    pg_loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-math.exp(0.25) / 2, 0.0]]))
    # A < 0: the pessimistic side keeps the larger log-ratio 0.6; both tokens get gradient
    old, lp, adv, mask = tokens([math.exp(0.1), math.exp(0.6)], [-1.0, -1.0])
    pg_loss, clipfrac, _, lower = fn(old, lp, adv, mask, cliprange=0.4)
    assert pg_loss.item() == pytest.approx(math.exp(0.35))
    assert clipfrac.item() == 0.0 and lower.item() == 0.5
    pg_loss.backward()
    torch.testing.assert_close(lp.grad, torch.full((1, 2), math.exp(0.35) / 2))


def test_cispo_keeps_gradient_of_clipped_tokens():
    old, lp, adv, mask = tokens([math.exp(0.5), 1.0], [1.0, 1.0], log_prob=[-1.0, -2.0])
    pg_loss, clipfrac, _, lower = get_policy_loss_fn("cispo")(old, lp, adv, mask, cliprange=0.2)
    assert pg_loss.item() == pytest.approx(-(1.2 * -1.0 + 1.0 * -2.0) / 2)
    assert clipfrac.item() == 0.5 and lower.item() == 0.0
    pg_loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-1.2, -1.0]]) / 2)  # PPO would give 0 on token 1


def cov_case():
    # mean A = 0, mean log_prob = -2: covariances [3, 3, 0, 0]; ratio 1 everywhere (no PPO clip)
    log_prob = torch.tensor([[-1.0, -3.0, -2.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[3.0, -3.0, 0.5, -0.5]])
    return log_prob.detach().clone(), log_prob, adv, torch.ones(1, 4)


@pytest.mark.parametrize("ratio, removed", [(0.25, 1), (0.5, 2), (1.0, 2), (0.0, 0)])
def test_clip_cov_removes_k_eligible_tokens(ratio, removed):
    torch.manual_seed(0)
    old, lp, adv, mask = cov_case()
    fn = get_policy_loss_fn("clip_cov")
    pg_loss, clipfrac, _, _ = fn(old, lp, adv, mask, clip_cov_ratio=ratio, clip_cov_lb=1.0, clip_cov_ub=5.0)
    assert clipfrac.item() == pytest.approx(removed / 4)
    pg_loss.backward()
    grad = lp.grad[0]
    # tokens 0/1 are the only eligible ones (covariance 3 in (1, 5)); tokens 2/3 always keep -A/4
    assert int((grad[:2] == 0).sum()) == removed
    torch.testing.assert_close(grad[2:], torch.tensor([-0.5, 0.5]) / 4)


def test_kl_cov_penalises_the_top_covariance_token():
    log_prob = torch.tensor([[-1.0, -3.0, -2.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[4.0, -3.0, 0.5, -0.5]])  # covariances 3.75, 3.25, 0, 0: token 0 is the top one
    old = log_prob.detach() - torch.tensor([[0.1, 0.1, 0.0, 0.0]])
    pg_loss, frac, _, _ = get_policy_loss_fn("kl_cov")(old, log_prob, adv, torch.ones(1, 4), kl_cov_ratio=0.25, ppo_kl_coef=2.0)
    r = math.exp(0.1)
    assert pg_loss.item() == pytest.approx((-4 * r + 2 * 0.1 + 3 * r - 0.5 + 0.5) / 4, rel=1e-5)
    assert frac.item() == 0.25


def test_rollout_is_weights_scale_each_token():
    old, lp, adv, mask = tokens([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    rollout = old.clone()
    rollout[0, 1] -= 1.0  # the rollout engine thought token 1 less likely: weight e, capped at 2
    rollout[0, 2] += math.log(4.0)  # more likely: weight 1/4
    weights, metrics = compute_tis_weights(old, rollout, mask, cap=2.0)
    torch.testing.assert_close(weights, torch.tensor([[1.0, 2.0, 0.25]]))
    assert metrics["tis/capped_frac"].item() == pytest.approx(1 / 3)
    assert metrics["tis/rollout_kl"].item() > 0
    pg_loss, *_ = compute_policy_loss(old, lp, adv, mask, rollout_is_weights=weights)
    assert pg_loss.item() == pytest.approx(-(1.0 + 2.0 * 2.0 + 3.0 * 0.25) / 3)
    with pytest.raises(ValueError, match="cap must be > 0"):
        compute_tis_weights(old, rollout, mask, cap=0.0)


def test_all_builtin_losses_share_one_signature():
    reference = inspect.signature(compute_policy_loss).parameters
    assert tuple(reference) == POLICY_LOSS_PARAMS
    builtin = {"vanilla", "gspo", "gpg", "clip_cov", "kl_cov", "geo_mean", "cispo"}
    assert set(POLICY_LOSS_REGISTRY) >= builtin
    for name in builtin:  # plug-ins registered by other tests may follow verl's other convention
        params = inspect.signature(POLICY_LOSS_REGISTRY[name]).parameters
        assert [(p.name, p.kind, p.default) for p in params.values()] == [
            (p.name, p.kind, p.default) for p in reference.values()
        ], name


def test_registry_plugin_errors_and_unknown_name():
    with pytest.raises(ValueError, match="unknown policy loss 'ppo2'.*'vanilla'"):
        get_policy_loss_fn("ppo2")
    with pytest.raises(TypeError, match="does not accept"):
        register_policy_loss("test_narrow")(lambda old_log_prob, log_prob, advantages, response_mask: None)
    assert "test_narrow" not in POLICY_LOSS_REGISTRY

    @register_policy_loss("test_reinforce")
    def reinforce(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", **numbers):
        loss = -(advantages * log_prob * response_mask).sum() / response_mask.sum()
        zero = log_prob.new_zeros(())
        return loss, zero, zero, zero

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_policy_loss("vanilla")(reinforce)
        old, lp, adv, mask = tokens([1.0, 1.0], [1.0, 3.0], log_prob=[-1.0, -2.0])
        loss, *_ = get_policy_loss_fn("test_reinforce")(old, lp, adv, mask, cliprange=0.2, global_num_tokens=2)
        assert loss.item() == pytest.approx((1.0 + 6.0) / 2)
    finally:
        POLICY_LOSS_REGISTRY.pop("test_reinforce")


DETERMINISTIC = ["vanilla", "gspo", "gpg", "geo_mean", "cispo"]


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_two_micro_batches_equal_the_whole_batch(name, mode):
    """Loss and gradient of a mini-batch == the sum over its micro-batches given the global counts."""
    gen = torch.Generator().manual_seed(3)
    batch, length = 6, 5
    base = torch.randn(batch, length, generator=gen) - 2.0
    old = base + 0.3 * torch.randn(batch, length, generator=gen)
    adv = torch.randn(batch, 1, generator=gen).expand(batch, length).contiguous()  # outcome advantages
    mask = (torch.arange(length) < torch.tensor([5, 2, 4, 1, 5, 3])[:, None]).float()
    fn = get_policy_loss_fn(name)
    kw = dict(cliprange=0.2, loss_agg_mode=mode, loss_scale_factor=float(length))

    whole_lp = base.clone().requires_grad_()
    whole = fn(old, whole_lp, adv, mask, **kw)[0]
    whole.backward()

    split_lp = base.clone().requires_grad_()
    counts = [agg_loss_counts(m) for m in mask.split(3)]
    tokens_, seqs = sum(c[0] for c in counts), sum(c[1] for c in counts)
    total = 0.0
    for rows in (slice(0, 3), slice(3, 6)):
        part = fn(old[rows], split_lp[rows], adv[rows], mask[rows], global_num_tokens=tokens_, global_num_seqs=seqs, **kw)[0]
        part.backward()
        total = total + part.detach()
    torch.testing.assert_close(total, whole.detach())
    torch.testing.assert_close(split_lp.grad, whole_lp.grad)
