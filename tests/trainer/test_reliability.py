"""Faults injected into whole ``main_ppo`` runs: reward faults counted in metrics.jsonl, a stalled scorer bounded,
an all-unusable reward stopping the run, a stuck worker ending it, and wrong values / bad rows refused up front
(exit 2, one "config error" line, before Ray starts)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides, read_log, write_arithmetic_parquet  # noqa: E402

from verl.trainer.config import load_config, validate_config  # noqa: E402
from verl.trainer.main_ppo import main  # noqa: E402
from verl.utils.config import ConfigError  # noqa: E402

LOCAL = ["algorithm.adv_estimator=grpo", "trainer.n_gpus_per_node=1", "trainer.test_freq=-1",
         "trainer.val_before_train=false"]


def run_cli(args, cwd, timeout=600, prelude=""):
    """``main_ppo`` in a fresh process (local mode: one worker process, no Ray); ``prelude`` runs first."""
    script = os.path.join(cwd, "run_main_ppo.py")
    with open(script, "w") as f:
        f.write(prelude + "\nimport sys\nfrom verl.trainer.main_ppo import main\nsys.exit(main(sys.argv[1:]))\n")
    env = dict(os.environ, OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, script, *args], cwd=cwd, env=env, text=True, capture_output=True,
                          timeout=timeout, start_new_session=True)
    return proc, time.monotonic() - start


FAULTY_SCORER = '''
import time
CALLS = [0]

def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    """Of every 8 calls: one raises, one NaN, one a string, one sleeps 120 s; the rest score normally."""
    k = CALLS[0] % 8
    CALLS[0] += 1
    if k == 0:
        raise ZeroDivisionError("scorer bug")
    if k == 1:
        return float("nan")
    if k == 2:
        return "1.0"
    if k == 3:
        time.sleep(120)
    return (sum(map(ord, solution_str)) % 7) / 6.0
'''


def test_reward_faults_reach_metrics_and_a_stall_is_bounded(ppo_fixture, tmp_path):
    (tmp_path / "faulty.py").write_text(FAULTY_SCORER)
    out = tmp_path / "out"
    args = base_overrides(ppo_fixture, out, *LOCAL, f"custom_reward_function.path={tmp_path / 'faulty.py'}",
                          "+reward_model.reward_kwargs.timeout_s=2")
    proc, _ = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2]
    for record in log:  # 4 prompts x 2 responses per step: 1 raised, 2 unusable values, 1 stalled
        assert record["reward/num_errors"] == 1 and record["reward/num_invalid"] == 2
        assert record["reward/num_timeouts"] == 1
        assert record["reward/frac_unusable"] == 0.5 and record["reward/frac_timeouts"] == 0.125
        assert record["timing_s/reward"] < 2 + 10, "the 120 s sleep was cut at the 2 s limit"


def test_all_unusable_rewards_stop_the_run_showing_a_sample(ppo_fixture, tmp_path):
    (tmp_path / "broken.py").write_text(textwrap.dedent('''
        def compute_score(data_source, solution_str, ground_truth, extra_info=None):
            raise ValueError(f"cannot parse {ground_truth!r}")
    '''))
    out = tmp_path / "out"
    args = base_overrides(ppo_fixture, out, *LOCAL, f"custom_reward_function.path={tmp_path / 'broken.py'}",
                          "trainer.total_training_steps=5", "trainer.max_failed_reward_steps=2")
    proc, _ = run_cli(args, tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    assert "no usable reward in 2 consecutive training step(s)" in err
    assert "all 8 samples of the last batch were unusable (8 errors" in err
    assert "first failing sample 0 (data_source='openai/gsm8k'" in err
    assert "ValueError: cannot parse" in err and 'raise ValueError(f"cannot parse' in err  # exception + traceback
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2], "step 1 was logged, and the counts of step 2, which stopped the run"
    assert log[0]["reward/num_errors"] == 8 and log[1]["reward/num_errors"] == 8
    assert log[1]["reward/frac_unusable"] == 1.0


HANG_UPDATE = '''
import functools, time
from verl.workers import fsdp_workers

_orig = fsdp_workers.ActorRolloutRefWorker.update_actor

@functools.wraps(_orig)
def update_actor(self, *args, **kwargs):  # a stuck collective, as far as the driver can tell
    time.sleep(10**6)

fsdp_workers.ActorRolloutRefWorker.update_actor = update_actor
'''


@pytest.mark.slow  # ~40 s; the watchdog itself is in tests/single_controller/test_watchdog.py
def test_a_worker_stuck_in_a_method_ends_the_run(ppo_fixture, tmp_path):
    out = tmp_path / "out"
    args = base_overrides(ppo_fixture, out, *LOCAL, "trainer.worker_call_timeout_s=30")
    proc, elapsed = run_cli(args, tmp_path, prelude=HANG_UPDATE)
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    assert "worker actor_rollout_0 (rank 0) did not return from update_actor within 30 s" in err
    assert "trainer.worker_call_timeout_s" in err and "time.sleep(10**6)" in err  # the stuck frame
    assert elapsed < 300


# ---------------------------------------------------------------------------------------------- refused up front

WRONG_VALUES = [
    ("actor_rollout_ref.actor.grad_clip=-1", "actor_rollout_ref.actor.grad_clip=-1.0 must be > 0"),
    ("actor_rollout_ref.actor.grad_clip=0", "actor_rollout_ref.actor.grad_clip=0.0 must be > 0"),
    ("critic.grad_clip=-1", "critic.grad_clip=-1.0 must be > 0"),
    ("actor_rollout_ref.actor.ppo_epochs=0", "actor_rollout_ref.actor.ppo_epochs=0 must be >= 1"),
    ("critic.ppo_epochs=0", "critic.ppo_epochs=0 must be >= 1"),
    ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=0",
     "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=0 must be >= 1"),
    ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=0",
     "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=0 must be >= 1"),
    ("data.val_batch_size=0", "data.val_batch_size=0 must be >= 1"),
    ("data.train_max_samples=0", "data.train_max_samples=0 must be >= 1 (or -1: all rows)"),
    ("actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=bf17",
     "actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype='bf17' is not a dtype name"),
    ("actor_rollout_ref.ref.fsdp_config.model_dtype=fp8", "actor_rollout_ref.ref.fsdp_config.model_dtype='fp8'"),
    ("actor_rollout_ref.actor.optim.lr=-1e-6", "actor_rollout_ref.actor.optim.lr=-1e-06 must be >= 0"),
    ("critic.optim.lr=-1", "critic.optim.lr=-1.0 must be >= 0"),
    ("actor_rollout_ref.actor.optim.weight_decay=-0.1", "optim.weight_decay=-0.1 must be >= 0"),
    ("actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=1.5", "lr_warmup_steps_ratio=1.5 must be in [0, 1]"),
    ("actor_rollout_ref.actor.clip_ratio=-0.2", "actor_rollout_ref.actor.clip_ratio=-0.2 must be > 0"),
    ("actor_rollout_ref.actor.clip_ratio_high=-0.1", "actor_rollout_ref.actor.clip_ratio_high=-0.1 must be >= 0"),
    ("actor_rollout_ref.actor.clip_ratio_c=0.5", "actor_rollout_ref.actor.clip_ratio_c=0.5 must be > 1"),
    ("actor_rollout_ref.actor.kl_loss_coef=-1", "actor_rollout_ref.actor.kl_loss_coef=-1.0 must be >= 0"),
    ("actor_rollout_ref.actor.optim.warmup_style=linear_decay", "warmup_style"),
    ("actor_rollout_ref.model.attn_implementation=flash_attn_9",
     "actor_rollout_ref.model.attn_implementation='flash_attn_9' is not an attention implementation"),
    ("critic.model.attn_implementation=fast", "critic.model.attn_implementation='fast'"),
    ("+actor_rollout_ref.model.override_config.attn_implementation=bogus",  # verl's spelling of the same key
     "actor_rollout_ref.model.override_config.attn_implementation='bogus' is not an attention implementation"),
    ("actor_rollout_ref.actor.strategy=deepspeed", "actor_rollout_ref.actor.strategy='deepspeed' must be one of"),
    ("actor_rollout_ref.actor.fsdp_config.fsdp_size=0", "actor_rollout_ref.actor.fsdp_config.fsdp_size=0"),
    ("algorithm.gamma=1.5", "algorithm.gamma=1.5 must be in [0, 1]"),
    ("algorithm.lam=-0.1", "algorithm.lam=-0.1 must be in [0, 1]"),
    ("algorithm.kl_ctrl.kl_coef=-0.001", "algorithm.kl_ctrl.kl_coef=-0.001 must be >= 0"),
    ("critic.cliprange_value=0", "critic.cliprange_value=0.0 must be > 0"),
    ("trainer.total_epochs=0", "trainer.total_epochs=0 must be >= 1"),
    ("trainer.critic_warmup=-1", "trainer.critic_warmup=-1 must be >= 0"),
    ("trainer.worker_call_timeout_s=-5", "trainer.worker_call_timeout_s=-5.0 must be >= 0"),
    ("trainer.max_failed_reward_steps=-1", "trainer.max_failed_reward_steps=-1 must be >= 0"),
    ("+reward_model.reward_kwargs.timeout_s=-1", "reward_model.reward_kwargs.timeout_s=-1"),
    ("reward_model.overlong_buffer.penalty_factor=-1", "reward_model.overlong_buffer.penalty_factor=-1.0"),
    ("actor_rollout_ref.rollout.max_model_len=20", "max_model_len=20 cannot hold a 32-token prompt"),
    ("actor_rollout_ref.actor.checkpoint.save_contents=[model,weights]", "save_contents=['model', 'weights'] may only"),
    ("actor_rollout_ref.actor.policy_loss.clip_cov_lb=9", "clip_cov_lb=9.0 must be below clip_cov_ub=5.0"),
    ("actor_rollout_ref.actor.optim.betas=[0.9,1.5]", "optim.betas=[0.9, 1.5] must be two numbers in [0, 1)"),
    ("actor_rollout_ref.actor.entropy_coeff=.nan", "entropy_coeff=nan must be a finite number"),
]


@pytest.mark.parametrize("value,message", WRONG_VALUES, ids=[v for v, _ in WRONG_VALUES])
def test_wrong_values_are_refused_before_ray_naming_the_key(ppo_fixture, tmp_path, capsys, value, message):
    argv = base_overrides(ppo_fixture, tmp_path / "out", "algorithm.adv_estimator=grpo", value)
    with pytest.raises(ConfigError) as err:
        validate_config(load_config(argv))
    assert message in str(err.value)
    assert main(argv) == 2
    captured = capsys.readouterr().err
    assert captured.startswith("config error: ") and message in captured
    assert "Traceback" not in captured
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized(), "refused before Ray started"


def test_max_model_len_is_checked_against_the_real_prompt_length(ppo_fixture, tmp_path):
    # data.max_prompt_length=32 (+ 8 response tokens): 100 positions are plenty, whatever rollout.prompt_length says
    validate_config(load_config(base_overrides(ppo_fixture, tmp_path, "algorithm.adv_estimator=grpo",
                                               "actor_rollout_ref.rollout.max_model_len=100")))


def long_row_parquet(path, n, long_row):
    """``n`` arithmetic rows, row ``long_row`` with a prompt far over 32 tokens."""
    import pandas as pd

    write_arithmetic_parquet(path, n, seed=3)
    frame = pd.read_parquet(path)
    frame.at[long_row, "prompt"] = [{"role": "user", "content": "What is " + " + ".join(["7"] * 60) + "?"}]
    frame.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("which", ["train", "val"])
def test_an_overlong_row_is_refused_before_training(ppo_fixture, tmp_path, capsys, which):
    # the last row of the training file (read in the last batch) or of the validation file
    train = long_row_parquet(tmp_path / "train.parquet", 16, 15) if which == "train" else ppo_fixture["train"]
    val = long_row_parquet(tmp_path / "val.parquet", 4, 3) if which == "val" else ppo_fixture["val"]
    argv = base_overrides(ppo_fixture, tmp_path / "out", *LOCAL, f"data.train_files={train}", f"data.val_files={val}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    row = 15 if which == "train" else 3
    assert err.startswith(f"config error: {tmp_path / (which + '.parquet')}, row {row}: prompt is ")
    assert "longer than data.max_prompt_length=32" in err and err.count("\n") == 1 and "Traceback" not in err


def test_setup_errors_exit_2_with_one_line(ppo_fixture, tmp_path, capsys):
    argv = base_overrides(ppo_fixture, tmp_path / "out", *LOCAL, "+reward_model.reward_kwargs.bogus=1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ") and "bogus" in err and err.count("\n") == 1
