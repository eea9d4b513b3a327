"""Local mode end to end: ``main_ppo`` with one worker process runs every role in its own process, Ray never
imported (a subprocess in which ``import ray`` raises), and gives the weights Ray mode gives."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "helpers"))
from conftest import base_overrides  # noqa: E402
from import_blocker import attempts, env_without  # noqa: E402

VARIED_REWARD = f"custom_reward_function.path={os.path.join(os.path.dirname(__file__), 'varied_reward.py')}"
# GRPO with the KL loss: the reference role is colocated with the actor (the hybrid engine's WorkerDict path)
GRPO_3_STEPS = ["algorithm.adv_estimator=grpo", "actor_rollout_ref.actor.use_kl_loss=true", VARIED_REWARD,
                "trainer.n_gpus_per_node=1", "trainer.total_training_steps=3", "trainer.save_freq=3",
                "trainer.test_freq=3", "ray_init.num_cpus=2"]
METRICS = ["actor/pg_loss", "actor/kl_loss", "actor/grad_norm", "critic/score/mean", "timing_s/gen", "timing_s/ref",
           "timing_s/update_actor", "timing_s/step", "perf/throughput", "response_length/mean"]


def run_main_ppo(args: list[str], env: dict[str, str], cwd, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(env, OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return proc


def read_log(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def actor_weights(out_dir, step):
    """The actor's weights of a checkpoint, read back from its DCP shards without a process group."""
    import torch.distributed.checkpoint as dcp  # noqa: F401
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = os.path.join(out_dir, f"weights_{step}.pt")
    dcp_to_torch_save(os.path.join(out_dir, f"global_step_{step}", "actor", "model"), target)
    return torch.load(target, weights_only=False)


@pytest.fixture(scope="module")
def local_run(ppo_fixture, tmp_path_factory):
    """3 GRPO steps in local mode (chosen automatically) in a process where Ray cannot be imported."""
    root = tmp_path_factory.mktemp("local")
    blocker = root / "blocker"
    out = root / "out"
    proc = run_main_ppo(base_overrides(ppo_fixture, out, *GRPO_3_STEPS), env_without(["ray"], blocker), cwd=root)
    return {"out": out, "proc": proc, "blocker": blocker}


def test_local_mode_runs_without_ray(local_run):
    assert "execution mode: local" in local_run["proc"].stdout
    assert attempts(local_run["blocker"]) == [], "nothing even tried to import Ray"
    log = read_log(local_run["out"])
    assert [r["step"] for r in log] == [1, 2, 3]
    for record in log:
        missing = [k for k in METRICS if k not in record]
        assert not missing, missing
        assert all(math.isfinite(v) for v in record.values() if isinstance(v, float))
    assert "val-core/openai/gsm8k/reward/mean@1" in log[-1]
    assert any(r["actor/grad_norm"] > 0 for r in log)
    ckpt = local_run["out"] / "global_step_3"
    assert (local_run["out"] / "latest_checkpointed_iteration.txt").read_text() == "3"
    for part in ("actor/model", "actor/optim", "actor/huggingface/config.json", "trainer_state.pt"):
        assert (ckpt / part).exists(), part


def test_local_and_ray_mode_give_the_same_weights(local_run, ppo_fixture, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    proc = run_main_ppo(base_overrides(ppo_fixture, out, *GRPO_3_STEPS, "trainer.execution_mode=ray"),
                        dict(os.environ, RAY_AUTH_MODE="disabled"), cwd=tmp_path)
    assert "execution mode: ray" in proc.stdout
    local, ray_mode = read_log(local_run["out"]), read_log(out)
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/kl_loss", "critic/score/mean", "response_length/mean"):
        assert [r[key] for r in local] == pytest.approx([r[key] for r in ray_mode], rel=1e-5, abs=1e-7), key
    a, b = actor_weights(local_run["out"], 3), actor_weights(out, 3)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
