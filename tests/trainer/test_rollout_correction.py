"""Rollout correction (``algorithm.rollout_correction``) on hand-computed cases: importance weights, rejection
masks, threshold parsing, the bypass-mode REINFORCE loss, and the config checks."""


import pytest
import torch

from verl.trainer.config import load_config, validate_config
from verl.trainer.config.features import parse_rs_thresholds
from verl.trainer.config.schema import RolloutCorrectionConfig
from verl.trainer.ppo.rollout_corr_helper import (
    bypass_reinforce_loss,
    compute_is_weights,
    compute_rollout_correction_and_rejection_mask,
    compute_rs_keep_mask,
)
from verl.utils.config import ConfigError

# two responses: ratios pi_train / pi_rollout per token; the second has a padding token last
RATIOS = torch.tensor([[0.5, 1.5, 3.0], [1.2, 1.0, 1.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
LOG_RATIO = torch.log(RATIOS) * MASK


def test_token_weights_are_truncated_ratios_zero_on_padding():
    w = compute_is_weights(LOG_RATIO, MASK, "token", threshold=2.0)
    assert torch.allclose(w, torch.tensor([[0.5, 1.5, 2.0], [1.2, 1.0, 0.0]]))


def test_sequence_weights_are_the_truncated_product():
    w = compute_is_weights(LOG_RATIO, MASK, "sequence", threshold=2.0)
    # row 0: 0.5 * 1.5 * 3.0 = 2.25 -> 2.0; row 1: 1.2 * 1.0 = 1.2
    assert torch.allclose(w, torch.tensor([[2.0, 2.0, 2.0], [1.2, 1.2, 0.0]]))


def test_batch_normalize_gives_mean_one():
    tok = compute_is_weights(LOG_RATIO, MASK, "token", threshold=2.0, batch_normalize=True)
    raw = torch.tensor([0.5, 1.5, 2.0, 1.2, 1.0])
    assert torch.allclose(tok[MASK.bool()], raw / raw.mean())
    seq = compute_is_weights(LOG_RATIO, MASK, "sequence", threshold=2.0, batch_normalize=True)
    assert torch.allclose(seq[:, 0], torch.tensor([2.0, 1.2]) / 1.6)


def test_rejection_modes():
    keep = compute_rs_keep_mask(LOG_RATIO, MASK, [("token_k1", 0.6, 1.4)])
    assert torch.equal(keep, torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    keep = compute_rs_keep_mask(LOG_RATIO, MASK, [("token_k1", 0.4, 1.6)])
    assert torch.equal(keep, torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    # seq_mean_k1: geometric means 2.25 ** (1/3) = 1.31 and 1.2 ** (1/2) = 1.095; bounds [0.8, 1.2] keep row 1 only
    keep = compute_rs_keep_mask(LOG_RATIO, MASK, [("seq_mean_k1", 0.8, 1.2)])
    assert torch.equal(keep, torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    # seq_sum_k1: products 2.25 and 1.2 within [0.5, 2.5] -> both kept
    assert torch.equal(compute_rs_keep_mask(LOG_RATIO, MASK, [("seq_sum_k1", 0.5, 2.5)]), MASK)
    # token_k2: 0.5 * log(r)^2 = [0.240, 0.082, 0.603] and [0.017, 0, -]; upper 0.1 keeps tokens 2, 4, 5
    keep = compute_rs_keep_mask(LOG_RATIO, MASK, [("token_k2", None, 0.1)])
    assert torch.equal(keep, torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    # seq_max_k3: r - 1 - log r, max per row = 3 - 1 - log 3 = 0.901 and 1.2 - 1 - log 1.2 = 0.0177
    keep = compute_rs_keep_mask(LOG_RATIO, MASK, [("seq_max_k3", None, 0.5)])
    assert torch.equal(keep, torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    # two modes: both must keep a token
    keep = compute_rs_keep_mask(LOG_RATIO, MASK, [("token_k1", 0.4, 1.6), ("token_k2", None, 0.1)])
    assert torch.equal(keep, torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))


def test_threshold_parsing():
    assert parse_rs_thresholds("token_k1", 2.0) == [("token_k1", 0.5, 2.0)]
    assert parse_rs_thresholds("token_k1, seq_max_k2", "0.7_1.3,0.25") == [("token_k1", 0.7, 1.3), ("seq_max_k2", None, 0.25)]
    assert parse_rs_thresholds("seq_sum_k3,token_k3", "0.1") == [("seq_sum_k3", None, 0.1), ("token_k3", None, 0.1)]
    for rs, threshold, message in [("token_k9", 1.0, "unknown mode"), ("token_k1", None, "needs"),
                                   ("token_k2", "0.5_2", "k1 modes take"), ("token_k1,token_k2", "1,2,3", "one threshold per")]:
        with pytest.raises(ConfigError, match=message):
            parse_rs_thresholds(rs, threshold)


def test_decoupled_correction_uses_old_over_rollout():
    rollout = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.3, 0.0]])
    old = rollout + torch.log(RATIOS) * MASK
    cfg = RolloutCorrectionConfig(rollout_is="token", rollout_is_threshold=2.0, rollout_rs="token_k1",
                                  rollout_rs_threshold="0.4_1.6")
    weights, mask, metrics = compute_rollout_correction_and_rejection_mask(old, rollout, MASK, cfg)
    assert torch.equal(mask, torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    assert torch.allclose(weights, torch.tensor([[0.5, 1.5, 0.0], [1.2, 1.0, 0.0]]))
    assert metrics["rollout_corr/rollout_rs_masked_fraction"] == pytest.approx(1 / 5)


def test_bypass_reinforce_loss_and_gradient():
    log_prob = torch.log(torch.tensor([[0.5, 0.3, 0.9], [0.6, 0.2, 0.1]])).requires_grad_()
    rollout = log_prob.detach() - torch.log(RATIOS)  # pi_theta / pi_rollout = RATIOS
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    cfg = RolloutCorrectionConfig(rollout_is="token", rollout_is_threshold=2.0, bypass_mode=True, loss_type="reinforce")
    loss, mask = bypass_reinforce_loss(log_prob, rollout, adv, MASK, cfg, "token-mean")
    w = torch.tensor([[0.5, 1.5, 2.0], [1.2, 1.0, 0.0]])
    assert loss.item() == pytest.approx(float((-adv * w * log_prob.detach() * MASK).sum() / 5), rel=1e-5)
    loss.backward()
    assert torch.allclose(log_prob.grad, -adv * w * MASK / 5)


def correction_argv(*extra):
    return ["algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=2",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2", *extra]


@pytest.mark.parametrize("extra,message", [
    (["algorithm.rollout_correction.rollout_is=token"], "calculate_log_probs=true"),
    (["algorithm.rollout_correction.rollout_is=tokens", "actor_rollout_ref.rollout.calculate_log_probs=true"],
     "rollout_is='tokens'"),
    (["algorithm.rollout_correction.loss_type=reinforce", "actor_rollout_ref.rollout.calculate_log_probs=true"],
     "set algorithm.rollout_correction.bypass_mode=true"),
])
def test_config_errors_name_the_key(extra, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_config(load_config(correction_argv(*extra)), check_environment=False)
