"""The on-policy shortcut: one epoch and one mini-batch per step take the old log-probs from the update's own
forward (detached), which gives the same weights as recomputing them first; anything else still needs them."""

import pytest
import torch

from verl.utils.config import from_mapping
from verl.workers import actor as actor_module
from verl.workers.actor import PPOActor, is_on_policy
from verl.workers.batching import BatchPlan
from verl.workers.config import ActorRolloutRefConfig
from verl.workers.fsdp import build_lr_scheduler, build_optimizer, load_hf_model


def make_actor(model_dir, **actor_overrides):
    cfg = {"actor": {"ppo_mini_batch_size": 8, "ppo_micro_batch_size_per_gpu": 3, "grad_clip": 100.0,
                     "tis_imp_ratio_cap": 2.0, "optim": {"lr": 0.05, "eps": 1.0}, **actor_overrides}}
    cfg = from_mapping(ActorRolloutRefConfig, cfg, "actor_rollout_ref.")
    model = load_hf_model(model_dir)
    optimizer = build_optimizer(model, cfg.actor.optim)
    return PPOActor(model, cfg.actor, optimizer, build_lr_scheduler(optimizer, cfg.actor.optim, 4), packed=True)


def rollout_data(make_batch):
    data = make_batch(n=8, seed=21)
    g = torch.Generator().manual_seed(3)
    data.batch["advantages"] = torch.randn(len(data), 7, generator=g) * data.batch["response_mask"]
    data.batch["rollout_log_probs"] = -torch.rand(len(data), 7, generator=g) * data.batch["response_mask"]
    return data


def test_is_on_policy_only_for_one_epoch_and_one_mini_batch():
    assert is_on_policy(1, 64, 64) and is_on_policy(1, 32, 64)
    assert not is_on_policy(2, 64, 64) and not is_on_policy(1, 64, 32)


def test_on_policy_update_equals_recomputing_old_log_probs(tiny_model_dir, make_batch, monkeypatch):
    data = rollout_data(make_batch)
    plan = BatchPlan(mini_batch_size=8, micro_batch_size=3, max_token_len=None)

    shortcut = make_actor(tiny_model_dir)
    before = {k: v.clone() for k, v in shortcut.model.state_dict().items()}
    m_short = shortcut.update_policy(data, plan, 0.9, calculate_entropy=True)  # no old_log_probs in the batch

    recomputed = make_actor(tiny_model_dir)
    old, _ = recomputed.compute_log_prob(data, BatchPlan.for_forward(4, False, 0), 0.9)
    with_old = data.select(batch_keys=list(data.batch.keys()))
    with_old.batch["old_log_probs"] = old
    monkeypatch.setattr(actor_module, "is_on_policy", lambda *args: False)
    m_rec = recomputed.update_policy(with_old, plan, 0.9)

    for name, w in recomputed.model.state_dict().items():
        assert not torch.equal(w, before[name]), f"{name} did not change"
        torch.testing.assert_close(shortcut.model.state_dict()[name], w, atol=1e-6, rtol=1e-5, msg=name)
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/pg_clipfrac"):
        assert m_short[key] == pytest.approx(m_rec[key], rel=1e-5, abs=1e-6), key
    assert m_short["actor/ppo_kl"] == 0.0  # ratio exactly 1
    assert m_short["actor/entropy"] > 0 and "actor/entropy" not in m_rec  # the metric only when asked for


def test_off_policy_update_still_needs_old_log_probs(tiny_model_dir, make_batch):
    data = rollout_data(make_batch)
    two_minis = BatchPlan(mini_batch_size=4, micro_batch_size=2, max_token_len=None)
    with pytest.raises(KeyError, match="old_log_probs"):
        make_actor(tiny_model_dir).update_policy(data, two_minis, 1.0)
