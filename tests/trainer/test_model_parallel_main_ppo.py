"""End to end through ``main_ppo`` with model parallelism on 4 CPU worker processes: Ulysses SP=2 for the actor
and reference, tensor-parallel rollout TP=2 in the native engine (2 data-parallel groups each), 2 GRPO steps; a
run resumed at step 2 from the step-1 checkpoint equals the uninterrupted one."""

import os
import sys

import pytest
import torch

ray = pytest.importorskip("ray")
sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides, read_log  # noqa: E402
from test_main_ppo import VARIED_REWARD, final_weights  # noqa: E402

from verl.trainer.main_ppo import main  # noqa: E402

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.slow]  # about 4.5 min on the loaded 2-core machine

PARALLEL = ["trainer.n_gpus_per_node=4", "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2",
            "actor_rollout_ref.rollout.tensor_model_parallel_size=2", "actor_rollout_ref.model.use_remove_padding=true"]


def test_sp2_tp2_grpo_and_resume(ppo_fixture, tmp_path):
    common = ["algorithm.adv_estimator=grpo", "trainer.save_freq=1", "trainer.test_freq=-1", VARIED_REWARD,
              "trainer.total_training_steps=2", *PARALLEL]
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
