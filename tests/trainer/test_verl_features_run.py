"""verl's feature keys in one short run of ``main_ppo`` (local mode, 2 steps): DAPO's ``data.gen_batch_size`` with
dynamic sampling fills each training batch, ``algorithm.rollout_correction`` weights and rejects, and
``global_profiler`` writes a torch.profiler trace for exactly the chosen step."""

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides, read_log  # noqa: E402

from verl.trainer.config import load_config  # noqa: E402
from verl.trainer.main_ppo import run_ppo  # noqa: E402

VARIED_REWARD = f"custom_reward_function.path={os.path.join(os.path.dirname(__file__), 'varied_reward.py')}"


def test_dapo_gen_batch_rollout_correction_and_profiler(ppo_fixture, tmp_path):
    out, prof, rollouts = tmp_path / "out", tmp_path / "prof", tmp_path / "rollouts"
    run_ppo(load_config(base_overrides(
        ppo_fixture, out, "algorithm.adv_estimator=grpo", VARIED_REWARD, "trainer.n_gpus_per_node=1",
        "data.train_batch_size=2", "data.gen_batch_size=4", "data.dataloader_num_workers=0",
        "algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=seq_reward",
        "algorithm.filter_groups.max_num_gen_batches=8", "trainer.balance_batch=false",
        f"trainer.rollout_data_dir={rollouts}", "trainer.test_freq=-1",
        "actor_rollout_ref.rollout.calculate_log_probs=true", "algorithm.rollout_correction.rollout_is=token",
        "algorithm.rollout_correction.rollout_rs=token_k1", "algorithm.rollout_correction.rollout_rs_threshold=0.5_2.0",
        "global_profiler.tool=torch", "global_profiler.steps=[2]", f"global_profiler.save_path={prof}",
        "actor_rollout_ref.actor.profiler.enable=true")))
    log = read_log(out)
    for step in (1, 2):
        rows = [json.loads(line) for line in open(rollouts / f"{step}.jsonl")]
        assert len(rows) == 2 * 2, "train_batch_size prompts x n responses, from generation batches of 4 prompts"
        for a, b in zip(rows[::2], rows[1::2]):  # each kept group's responses differ in reward
            assert a["input"] == b["input"] and a["score"] != b["score"]
    for record in log:
        assert record["batch/num_gen_batches"] >= 1
        assert 0 < record["rollout_corr/rollout_is_mean"] <= 2.0
        assert 0 <= record["rollout_corr/rollout_rs_masked_fraction"] <= 1
        assert math.isfinite(record["actor/pg_loss"])
    assert sorted(os.listdir(prof)) == ["step_2"], "a trace for exactly the chosen step"
    trace = json.loads((prof / "step_2" / "actor_rollout_rank0.pt.trace.json").read_text())
    names = {event.get("name", "") for event in trace["traceEvents"]}
    assert any("aten::" in name for name in names), "the trace records the step's operators"
