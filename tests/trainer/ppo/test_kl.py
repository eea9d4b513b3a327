"""KL estimators, straight-through variants, controllers and the in-reward KL penalty."""

import math
from types import SimpleNamespace

import pytest
import torch

from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import (
    KL_PENALTY_TYPES,
    AdaptiveKLController,
    FixedKLController,
    apply_kl_penalty,
    get_kl_controller,
    kl_penalty,
)

LOGP = torch.tensor([[0.0, -1.0]])
REF = torch.tensor([[-0.5, -0.5]])


@pytest.mark.parametrize(
    "names, expected",
    [
        (("kl", "k1"), [0.5, -0.5]),
        (("abs",), [0.5, 0.5]),
        (("mse", "k2"), [0.125, 0.125]),
        # log r = ref - logp = [-0.5, 0.5]; r - 1 - log r
        (("low_var_kl", "k3"), [math.exp(-0.5) - 1 + 0.5, math.exp(0.5) - 1 - 0.5]),
    ],
)
def test_estimators_by_hand(names, expected):
    for name in names:
        torch.testing.assert_close(kl_penalty(LOGP, REF, name), torch.tensor([expected]))


def test_low_var_kl_is_clamped():
    out = kl_penalty(torch.tensor([[0.0, -50.0]]), torch.tensor([[-50.0, 0.0]]), "k3")
    torch.testing.assert_close(out, torch.tensor([[10.0, 10.0]]))  # 19 and e^20 - 21 before the clamp


@pytest.mark.parametrize("name", ["kl", "k1", "abs", "low_var_kl", "k3", "mse"])
def test_plus_variants_have_the_value_of_the_name_and_the_gradient_of_k2(name):
    logp = torch.tensor([[0.3, -1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-0.5, -0.2, -2.5]])
    out = kl_penalty(logp, ref, name + "+")
    torch.testing.assert_close(out.detach(), kl_penalty(logp, ref, name).detach())
    out.sum().backward()
    torch.testing.assert_close(logp.grad, (logp - ref).detach())  # d/dlogp 0.5 (logp - ref)^2


def test_unknown_estimator_lists_the_known_ones():
    with pytest.raises(ValueError, match="'low_var_kl'"):
        kl_penalty(LOGP, REF, "full")
    assert "k3+" in KL_PENALTY_TYPES


def test_adaptive_controller_by_hand():
    ctrl = AdaptiveKLController(init_kl_coef=0.2, target_kl=6.0, horizon=10000)
    ctrl.update(current_kl=9.0, n_steps=256)  # error 0.5 clipped to 0.2
    assert ctrl.value == pytest.approx(0.2 * (1 + 0.2 * 256 / 10000))
    before = ctrl.value
    ctrl.update(current_kl=5.4, n_steps=100)  # error -0.1
    assert ctrl.value == pytest.approx(before * (1 - 0.1 * 100 / 10000))
    fixed = FixedKLController(0.05)
    fixed.update(current_kl=100.0, n_steps=10)
    assert fixed.value == 0.05


def test_get_kl_controller_from_config_sections():
    assert isinstance(get_kl_controller({"type": "fixed", "kl_coef": 0.1}), FixedKLController)
    adaptive = get_kl_controller(SimpleNamespace(type="adaptive", kl_coef=0.1, target_kl=0.5, horizon=100))
    assert isinstance(adaptive, AdaptiveKLController) and adaptive.target == 0.5
    with pytest.raises(ValueError, match="kl_ctrl.type"):
        get_kl_controller({"type": "pid", "kl_coef": 0.1})
    with pytest.raises(ValueError, match="kl_ctrl.target_kl is not set"):
        get_kl_controller({"type": "adaptive", "kl_coef": 0.1, "horizon": 10})


def test_apply_kl_penalty_on_a_dataproto():
    scores = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    old = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0, -2.0], [-3.0, -2.0, -9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    data = DataProto.from_dict(
        {"token_level_scores": scores, "old_log_probs": old, "ref_log_prob": ref, "response_mask": mask}
    )
    ctrl = AdaptiveKLController(init_kl_coef=0.1, target_kl=0.1, horizon=1000)
    data, metrics = apply_kl_penalty(data, ctrl, kl_penalty="kl")
    kld = torch.tensor([[0.5, 0.0, 1.0], [1.0, 0.0, 0.0]])  # old - ref, masked
    torch.testing.assert_close(data.batch["token_level_rewards"], scores - 0.1 * kld)
    current = ((0.5 + 0.0 + 1.0) / 3 + (1.0 + 0.0) / 2) / 2
    assert metrics["actor/reward_kl_penalty"] == pytest.approx(current)
    assert metrics["actor/reward_kl_penalty_coeff"] == 0.1
    assert ctrl.value == pytest.approx(0.1 * (1 + 0.2 * 2 / 1000))  # current 0.5 > target 0.1: grows
