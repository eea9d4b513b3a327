"""``main_ppo`` with ``actor_rollout_ref.model.lora_rank > 0``, end to end in local mode: GRPO with the KL loss runs
without a reference worker (the actor's base is the reference), the adapter is saved in peft's format, and a bad
``target_modules`` stops the run before any worker starts."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides, read_log  # noqa: E402

VARIED_REWARD = f"custom_reward_function.path={os.path.join(os.path.dirname(__file__), 'varied_reward.py')}"
# one step of 4 prompts in 2 mini-batches (2 optimizer steps), no validation
LORA_GRPO = ["algorithm.adv_estimator=grpo", "actor_rollout_ref.actor.use_kl_loss=true", VARIED_REWARD,
             "actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.lora_alpha=16",
             "actor_rollout_ref.actor.optim.lr=1e-2", "trainer.n_gpus_per_node=1", "trainer.total_training_steps=1",
             "trainer.save_freq=1", "trainer.test_freq=0"]


def main_ppo(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false", RAY_AUTH_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=600, start_new_session=True)


def test_grpo_with_lora_and_kl_loss_runs_without_a_reference_model(ppo_fixture, tmp_path):
    out = tmp_path / "out"
    proc = main_ppo(base_overrides(ppo_fixture, out, *LORA_GRPO), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "execution mode: local" in proc.stdout
    assert "actor: LoRA rank 8, alpha 16 (scale 2) on 14 linear layers" in proc.stdout
    log = read_log(out)
    assert [r["step"] for r in log] == [1]
    # the adapters start at zero, so the first mini-batch's KL is 0; the second one's, after an update, is not
    assert log[0]["actor/kl_loss"] > 0 and log[0]["actor/grad_norm"] > 0
    assert "timing_s/ref" in log[0]
    with open(out / "global_step_1" / "actor" / "lora_adapter" / "adapter_config.json") as f:
        adapter = json.load(f)
    assert adapter["r"] == 8 and adapter["base_model_name_or_path"] == ppo_fixture["model"]


def test_unknown_target_module_is_a_config_error(ppo_fixture, tmp_path):
    """Checked from the model's config on the meta device, before any worker starts."""
    import pytest

    from verl.trainer.config import load_config
    from verl.trainer.config.validate import validate_config
    from verl.utils.config import ConfigError

    config = load_config(base_overrides(ppo_fixture, tmp_path / "out", *LORA_GRPO,
                                        "actor_rollout_ref.model.target_modules=[q_proj,qkv_proj]"))
    with pytest.raises(ConfigError, match=r"actor_rollout_ref\.model\.target_modules=\[q_proj,qkv_proj\]"):
        validate_config(config)
