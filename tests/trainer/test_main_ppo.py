"""End to end through ``main_ppo`` on 2 CPU worker processes: algorithms, placement, logs, resume."""

import json
import math
import os
import sys

import pytest
import torch

ray = pytest.importorskip("ray")
sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides, read_log  # noqa: E402

from verl.trainer.config import load_config  # noqa: E402
from verl.trainer.main_ppo import main, run_ppo  # noqa: E402

CORE_METRICS = [
    "critic/score/mean", "critic/rewards/mean", "critic/advantages/mean", "critic/returns/mean",
    "response_length/mean", "response_length/clip_ratio", "prompt_length/mean",
    "timing_s/gen", "timing_s/reward", "timing_s/old_log_prob", "timing_s/adv", "timing_s/update_actor", "timing_s/step",
    "timing_per_token_ms/gen", "perf/throughput", "perf/total_num_tokens", "perf/time_per_step",
    "actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/entropy", "actor/grad_norm", "actor/lr",
]


pytestmark = pytest.mark.usefixtures("ray_cluster")


VARIED_REWARD = f"custom_reward_function.path={os.path.join(os.path.dirname(__file__), 'varied_reward.py')}"




def final_weights(out_dir, step):
    """The actor's weights of a checkpoint, read back from its DCP shards without a process group."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = os.path.join(out_dir, f"weights_{step}.pt")
    dcp_to_torch_save(os.path.join(out_dir, f"global_step_{step}", "actor", "model"), target)
    return torch.load(target, weights_only=False)


@pytest.mark.parametrize("estimator,extra", [
    # GRPO in local mode (one process), PPO with a critic on 2 Ray worker processes
    ("grpo", ["actor_rollout_ref.actor.use_kl_loss=true", "trainer.n_gpus_per_node=1", "trainer.execution_mode=local"]),
    ("gae", ["algorithm.use_kl_in_reward=true"]),
])
def test_two_steps_from_the_cli_log_finite_metrics(ppo_fixture, tmp_path, estimator, extra):
    out = tmp_path / "out"
    dump = tmp_path / "rollouts"
    rc = main(base_overrides(ppo_fixture, out, f"algorithm.adv_estimator={estimator}",
                             f"trainer.rollout_data_dir={dump}", *extra))
    assert rc == 0
    log = read_log(out)
    assert [row["step"] for row in log] == [1, 2]
    expected = CORE_METRICS + (["critic/vf_loss", "critic/values/mean", "critic/vf_explained_var", "timing_s/values",
                                "timing_s/update_critic", "actor/reward_kl_penalty", "timing_s/ref"]
                               if estimator == "gae" else ["actor/kl_loss", "timing_s/ref"])
    for row in log:
        missing = [k for k in expected if k not in row]
        assert not missing, missing
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    assert "val-core/openai/gsm8k/reward/mean@1" in log[-1]
    lines = (dump / "1.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 2 and {"input", "output", "score", "step"} <= set(json.loads(lines[0]))


# one step of these needs no second worker process: they run in local mode (in this process, no Ray workers)
LOCAL = ["trainer.n_gpus_per_node=1", "trainer.execution_mode=local"]


@pytest.mark.parametrize("estimator", ["reinforce_plus_plus", "rloo", "remax"])
def test_other_estimators_run_a_step(ppo_fixture, tmp_path, estimator):
    out = tmp_path / "out"
    metrics = run_ppo(load_config(base_overrides(ppo_fixture, out, f"algorithm.adv_estimator={estimator}",
                                                 "trainer.total_training_steps=1", "trainer.test_freq=-1", *LOCAL)))
    assert math.isfinite(metrics["actor/pg_loss"]) and metrics["training/global_step"] == 1
    if estimator == "remax":
        assert "timing_s/gen_max" in metrics


def test_dapo_dynamic_sampling_keeps_only_varied_groups(ppo_fixture, tmp_path):
    metrics = run_ppo(load_config(base_overrides(
        ppo_fixture, tmp_path / "out", "algorithm.adv_estimator=grpo", VARIED_REWARD,
        "algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=seq_reward",
        "algorithm.filter_groups.max_num_gen_batches=6", "actor_rollout_ref.actor.clip_ratio_high=0.28",
        "trainer.total_training_steps=1", "trainer.test_freq=-1", *LOCAL)))
    assert metrics["batch/num_gen_batches"] >= 1
    assert metrics["critic/advantages/max"] > 0, "every kept group has responses that differ in reward"
    assert math.isfinite(metrics["actor/pg_loss"])


def check_resume_equals_uninterrupted(ppo_fixture, tmp_path, common):
    """Run 2 steps, then step 2 again resumed from the step-1 checkpoint: the resumed run starts after the
    checkpoint's step and its step 2 equals the uninterrupted one (metrics within 1e-6, weights exactly)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(base_overrides(ppo_fixture, straight, *common)) == 0
    assert main(base_overrides(ppo_fixture, resumed, *common, "trainer.resume_mode=resume_path",
                               f"trainer.resume_from_path={straight / 'global_step_1'}")) == 0
    a, b = read_log(straight), read_log(resumed)
    assert [r["step"] for r in a] == [1, 2] and [r["step"] for r in b] == [2]
    a, b = a[-1], b[-1]
    assert a["actor/grad_norm"] > 0 and a["critic/score/max"] > a["critic/score/min"], "a step with real gradients"
    for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean", "response_length/mean", "actor/entropy"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    wa, wb, w1 = final_weights(straight, 2), final_weights(resumed, 2), final_weights(straight, 1)
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert any(not torch.equal(wa[n], w1[n]) for n in wa), "step 2 changed the weights"
    assert (resumed / "latest_checkpointed_iteration.txt").read_text() == "2"


def test_resume_equals_uninterrupted(ppo_fixture, tmp_path):
    """Step 2 resumed from the step-1 checkpoint (a fresh run: new workers, dataloader and optimizer state read
    back) equals step 2 of the uninterrupted run, metrics and weights."""
    common = ["algorithm.adv_estimator=grpo", "trainer.save_freq=1", "trainer.test_freq=-1", "trainer.balance_batch=true",
              VARIED_REWARD, "trainer.total_training_steps=2"]
    check_resume_equals_uninterrupted(ppo_fixture, tmp_path, common)


def test_colocated_and_split_placement_agree(ppo_fixture, tmp_path):
    # greedy, one mini-batch, no reordering: the only difference left is the worker layout
    common = ["algorithm.adv_estimator=gae", "actor_rollout_ref.rollout.n=1", "actor_rollout_ref.rollout.do_sample=false",
              "actor_rollout_ref.actor.ppo_mini_batch_size=4", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
              "critic.ppo_mini_batch_size=4", "critic.ppo_micro_batch_size_per_gpu=1", "trainer.balance_batch=false",
              "trainer.test_freq=-1", VARIED_REWARD]
    runs = {}
    for placement in ("colocate", "split"):
        runs[placement] = run_ppo(load_config(base_overrides(ppo_fixture, tmp_path / placement, *common,
                                                             f"trainer.placement={placement}")))
    for key in ("actor/pg_loss", "critic/vf_loss", "critic/values/mean", "actor/grad_norm", "critic/grad_norm"):
        assert runs["colocate"][key] == pytest.approx(runs["split"][key], rel=1e-4, abs=1e-6), key
