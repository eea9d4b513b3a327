"""``main_ppo`` with ``rollout.multi_turn`` on CPU (local mode): two GRPO steps of a tiny model with verl's GSM8K tool
config, the tool_agent loop per sample, turn counts reaching the reward function and the metrics, and a resume from
the step-1 checkpoint that equals the uninterrupted run."""

import json
import os
import sys

import pytest

from verl.trainer.main_ppo import main

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
from agent_helpers import build_tool_calling_model  # noqa: E402

SYSTEM = "You are a math expert. Call check with your answer, then write it after ####."
CALL = '<tool_call>{"name": "check"}</tool_call>'
# verl's GSM8K answer checker under a one-token name, so that the tiny model below can write the whole call
TOOL_YAML = """
tools:
  - class_name: verl.tools.gsm8k_tool.Gsm8kTool
    config: {type: native}
    tool_schema:
      type: function
      function: {name: check, description: Check an answer., parameters: {type: object, properties: {}, required: []}}
"""


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
            "extra_info": {"index": i, "tools_kwargs": {"check": {"create_kwargs": {"ground_truth": truth}}}},
        })
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


def overrides(root, model, out, *extra):
    return [
        f"data.train_files={write_data(root / 'train.parquet', 8, 0)}", f"data.val_files={write_data(root / 'val.parquet', 2, 1)}",
        "data.train_batch_size=2", "data.max_prompt_length=512", "data.max_response_length=96",
        "data.return_raw_chat=true", f"actor_rollout_ref.model.path={model}",
        "algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.name=native", "actor_rollout_ref.rollout.dtype=float32",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.multi_turn.enable=true", "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3",
        f"actor_rollout_ref.rollout.multi_turn.tool_config_path={root / 'tools.yaml'}",
        f"custom_reward_function.path={os.path.join(HERE, 'multiturn_reward.py')}",
        "trainer.device=cpu", "trainer.n_gpus_per_node=1", "trainer.execution_mode=local", "trainer.total_training_steps=2",
        "trainer.logger=[console,file]", f"trainer.default_local_dir={out}", "trainer.val_before_train=false",
        f"trainer.rollout_data_dir={out / 'rollouts'}", "trainer.test_freq=2", "trainer.save_freq=1",
        "trainer.project_name=t", "trainer.experiment_name=t", *extra,
    ]


def read_log(out):
    with open(out / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two GRPO steps in local mode (one process), a checkpoint after each, of a tiny model that calls the tool in
    about half of its turns."""
    from verl.utils.tiny_model import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("multiturn")
    (root / "tools.yaml").write_text(TOOL_YAML)
    model = build_tool_calling_model(root / "model", build_tiny_tokenizer(extra_texts=[CALL] * 20), CALL)
    out = root / "straight"
    assert main(overrides(root, model, out)) == 0
    return {"log": read_log(out), "out": out, "root": root, "model": model}


def test_multi_turn_grpo_runs_and_reports(run):
    log = run["log"]
    assert [r["step"] for r in log] == [1, 2]
    for record in log:
        # every trajectory's turn count and tool scores reached the reward function (else the score is -10)
        assert record["critic/score/min"] > 0
        for key in ("num_turns/min", "num_turns/max", "num_turns/mean", "tool_call_counts/mean",
                    "multi_turn/tool_failures", "multi_turn/tokenization_mismatch"):
            assert key in record, key
        assert record["num_turns/min"] >= 2 and record["num_turns/max"] >= 4  # some trajectories used the tool
        assert 0 < record["tool_call_counts/mean"] and record["multi_turn/tool_failure_rate"] < 1
    assert "val-aux/num_turns/mean" in log[-1]
    assert (run["out"] / "global_step_1" / "actor").is_dir()


def test_multi_turn_run_resumes_like_the_uninterrupted_one(run):
    """Step 2 resumed from the step-1 checkpoint (a fresh trainer: weights, optimizer, dataloader and sampling
    seeds read back) rolls out the same multi-turn trajectories and takes the same update as the uninterrupted run."""
    resumed = run["root"] / "resumed"
    assert main(overrides(run["root"], run["model"], resumed, "trainer.resume_mode=resume_path",
                          f"trainer.resume_from_path={run['out'] / 'global_step_1'}")) == 0
    a, b = run["log"][-1], read_log(resumed)
    assert [r["step"] for r in b] == [2], "the resumed run starts after the checkpoint's step"
    b = b[-1]
    assert a["actor/grad_norm"] > 0, "a step with real gradients"
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/entropy", "critic/score/mean", "response_length/mean",
                "num_turns/mean", "tool_call_counts/mean", "val-core/openai/gsm8k/reward/mean@1"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    # the step's trajectories, text for text (prompts, model turns, tool responses)
    step2 = (run["out"] / "rollouts" / "2.jsonl").read_text()
    assert "<tool_response>" in step2 and step2 == (resumed / "rollouts" / "2.jsonl").read_text()
    assert (resumed / "latest_checkpointed_iteration.txt").read_text() == "2"
