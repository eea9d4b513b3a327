"""One PPO step whose reward comes from a generative reward model (served by the native engine to a verl-style
reward function) scored by two reward-loop worker processes: verl's reward-loop keys, end to end (local mode)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides, read_log  # noqa: E402

from verl.trainer.main_ppo import main  # noqa: E402

FN_FILE = os.path.join(os.path.dirname(__file__), "..", "reward", "genrm_reward_fn.py")


def test_ppo_step_scored_by_a_generative_reward_model_in_reward_workers(ppo_fixture, tmp_path):
    out, log = tmp_path / "out", tmp_path / "judge.jsonl"
    code = main(base_overrides(
        ppo_fixture, out, "algorithm.adv_estimator=grpo", "trainer.n_gpus_per_node=1", "trainer.total_training_steps=1",
        "trainer.test_freq=-1", "trainer.save_freq=-1",
        "reward_model.enable=true", f"reward_model.model.path={ppo_fixture['model']}", "reward_model.use_reward_loop=true",
        "reward_model.rollout.name=native", "reward_model.rollout.dtype=float32", "reward_model.rollout.prompt_length=128",
        "reward_model.rollout.response_length=8", "reward_model.num_workers=2",
        f"custom_reward_function.path={FN_FILE}", f"+custom_reward_function.reward_kwargs.log_path={log}"))
    assert code == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 8, "4 prompts x 2 samples, each judged once"
    assert len({c["pid"] for c in calls}) == 2 and os.getpid() not in {c["pid"] for c in calls}
    step = read_log(out)[-1]
    expected = sum(len(c["answer"]) % 7 for c in calls) / len(calls)
    assert abs(step["critic/score/mean"] - expected) < 1e-6, "the rewards are the judge's parsed scores"
