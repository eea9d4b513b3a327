"""``main_ppo`` with ``rollout.multi_turn`` on CPU: one GRPO step of a tiny model with verl's GSM8K tool config,
the tool_agent loop per sample, turn counts reaching the reward function and the metrics, resumable checkpoint."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
TOOL_CONFIG = os.path.join(HERE, "..", "..", "examples", "multiturn", "config", "gsm8k_tool_config.yaml")
SYSTEM = "You are a math expert. Call calc_gsm8k_reward with your answer, then write it after ####."


def write_data(path, n, seed):
    import random

    import pandas as pd

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        truth = str(a + b)
        rows.append({
            "data_source": "openai/gsm8k", "agent_name": "tool_agent", "ability": "math",
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"What is {a} + {b}?"}],
            "reward_model": {"style": "rule", "ground_truth": truth},
            "extra_info": {"index": i, "tools_kwargs": {"calc_gsm8k_reward": {"create_kwargs": {"ground_truth": truth}}}},
        })
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    root = tmp_path_factory.mktemp("multiturn")
    model = build_tiny_model(root / "model", build_tiny_tokenizer(), arch="qwen2", num_layers=2, seed=0)
    out = root / "out"
    args = [
        f"data.train_files={write_data(root / 'train.parquet', 8, 0)}", f"data.val_files={write_data(root / 'val.parquet', 2, 1)}",
        "data.train_batch_size=2", "data.max_prompt_length=512", "data.max_response_length=24",
        "data.return_raw_chat=true", f"actor_rollout_ref.model.path={model}",
        "algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.name=native", "actor_rollout_ref.rollout.dtype=float32",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.multi_turn.enable=true", "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3",
        f"actor_rollout_ref.rollout.multi_turn.tool_config_path={TOOL_CONFIG}",
        f"custom_reward_function.path={os.path.join(HERE, 'multiturn_reward.py')}",
        "trainer.device=cpu", "trainer.n_gpus_per_node=1", "trainer.total_training_steps=1",
        "trainer.logger=[console,file]", f"trainer.default_local_dir={out}", "trainer.val_before_train=false",
        "trainer.test_freq=1", "trainer.save_freq=1", "trainer.project_name=t", "trainer.experiment_name=t",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false", PYTHONPATH=HERE)
    proc = subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], cwd=root, env=env, text=True,
                          capture_output=True, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    with open(out / "metrics.jsonl") as f:
        return {"log": [json.loads(line) for line in f], "out": out, "proc": proc}


def test_multi_turn_grpo_runs_and_reports(run):
    log = run["log"]
    assert [r["step"] for r in log] == [1]
    for record in log:
        # every trajectory's turn count and tool scores reached the reward function (else the score is -10)
        assert record["critic/score/min"] > 0
        for key in ("num_turns/min", "num_turns/max", "num_turns/mean", "tool_call_counts/mean",
                    "multi_turn/tool_failures", "multi_turn/tokenization_mismatch"):
            assert key in record, key
        assert record["num_turns/min"] >= 2
    assert "val-aux/num_turns/mean" in log[-1]
    assert (run["out"] / "global_step_1" / "actor").is_dir()
