"""A verl user's plug-ins, registered by name and written against verl's contracts, drive a 2-step GRPO run
(local mode: one process, so registrations made here are seen by the workers)."""

import math

import torch

from tests.trainer.conftest import base_overrides
from verl.trainer.config import load_config
from verl.trainer.main_ppo import run_ppo
from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY, agg_loss, register_adv_est
from verl.trainer.ppo.core_algos import register_policy_loss
from verl.trainer.ppo.core_algos.masked import masked_mean
from verl.workers.reward_manager import REWARD_MANAGER_REGISTRY, register

CALLS = {"loss": 0, "adv": 0, "reward": 0}


@register_policy_loss("test_verl_pg")
def verl_pg_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", config=None,
                 rollout_is_weights=None):  # fmt: skip
    CALLS["loss"] += 1
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1 - config.clip_ratio, 1 + config.clip_ratio)
    pg = torch.maximum(-advantages * ratio, -advantages * clipped)
    loss = agg_loss(pg, response_mask, loss_agg_mode, **config.global_batch_info)
    return loss, {"actor/ppo_kl": masked_mean(old_log_prob - log_prob, response_mask).detach()}


@register_adv_est("test_verl_grpo")
def verl_grpo(token_level_rewards, response_mask, index, epsilon=1e-6, config=None, **kwargs):
    CALLS["adv"] += 1
    assert config.get("norm_adv_by_std_in_grpo", True) is True
    scores = token_level_rewards.sum(-1)
    adv = torch.zeros_like(scores)
    for uid in set(index.tolist()):
        rows = torch.tensor([i for i, u in enumerate(index) if u == uid])
        group = scores[rows]
        adv[rows] = (group - group.mean()) / (group.std() + epsilon) if len(rows) > 1 else 0.0
    adv = adv.unsqueeze(-1) * response_mask
    return adv, adv


@register("test_verl_length")
class LengthRewardManager:
    """verl's AbstractRewardManager contract: (tokenizer, num_examine, compute_score, reward_fn_key, **kwargs)."""

    def __init__(self, tokenizer, num_examine, compute_score=None, reward_fn_key="data_source", **kwargs):
        self.tokenizer = tokenizer

    def __call__(self, data, return_dict=False):
        CALLS["reward"] += 1
        prompt_len = data.batch["prompts"].shape[-1]
        lengths = data.batch["attention_mask"][:, prompt_len:].sum(-1)
        reward = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
        rows = torch.nonzero(lengths > 0).squeeze(-1)
        reward[rows, lengths[rows] - 1] = lengths[rows].float() / 8  # longer is better: a signal with variance
        if return_dict:
            return {"reward_tensor": reward, "reward_extra_info": {"length": lengths.tolist()}}
        return reward


def test_verl_style_plugins_train_two_grpo_steps(ppo_fixture, tmp_path):
    try:
        config = load_config(base_overrides(
            ppo_fixture, tmp_path / "out", "trainer.n_gpus_per_node=1", "trainer.test_freq=-1",
            "algorithm.adv_estimator=test_verl_grpo", "actor_rollout_ref.actor.policy_loss.loss_mode=test_verl_pg",
            "reward_model.reward_manager=test_verl_length", "actor_rollout_ref.rollout.n=4",
        ))  # fmt: skip
        metrics = run_ppo(config)
    finally:
        POLICY_LOSS_REGISTRY.pop("test_verl_pg", None)
        ADV_ESTIMATOR_REGISTRY.pop("test_verl_grpo", None)
        REWARD_MANAGER_REGISTRY.pop("test_verl_length", None)
    assert CALLS["adv"] == 2 and CALLS["reward"] >= 2 and CALLS["loss"] >= 2
    assert metrics["training/global_step"] == 2
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
