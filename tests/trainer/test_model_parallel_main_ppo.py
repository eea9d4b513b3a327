"""End to end through ``main_ppo`` with model parallelism on 4 CPU worker processes: Ulysses SP=2 for the actor
and reference, tensor-parallel rollout TP=2 in the native engine (2 data-parallel groups each), 2 GRPO steps; a
run resumed at step 2 from the step-1 checkpoint equals the uninterrupted one."""

import os
import sys

import pytest

ray = pytest.importorskip("ray")
sys.path.insert(0, os.path.dirname(__file__))
from test_main_ppo import VARIED_REWARD, check_resume_equals_uninterrupted  # noqa: E402


pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.slow]  # about 4.5 min on the loaded 2-core machine

PARALLEL = ["trainer.n_gpus_per_node=4", "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2",
            "actor_rollout_ref.rollout.tensor_model_parallel_size=2", "actor_rollout_ref.model.use_remove_padding=true"]


def test_sp2_tp2_grpo_and_resume(ppo_fixture, tmp_path):
    common = ["algorithm.adv_estimator=grpo", "trainer.save_freq=1", "trainer.test_freq=-1", VARIED_REWARD,
              "trainer.total_training_steps=2", *PARALLEL]
    check_resume_equals_uninterrupted(ppo_fixture, tmp_path, common)
