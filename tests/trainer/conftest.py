"""A tiny model and a tiny GSM8K-shaped parquet task for the trainer's end-to-end tests."""

import json
import os
import random

import pytest


def write_arithmetic_parquet(path, n: int, seed: int) -> str:
    import pandas as pd

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({
            "data_source": "openai/gsm8k",
            "prompt": [{"role": "user", "content": f"What is {a} + {b}? Answer after ####."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": "train", "index": i},
        })
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


@pytest.fixture(scope="session")
def ppo_fixture(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    root = tmp_path_factory.mktemp("ppo")
    model = build_tiny_model(root / "model", build_tiny_tokenizer(), arch="qwen2", num_layers=2, seed=0)
    train = write_arithmetic_parquet(root / "train.parquet", 16, seed=0)
    val = write_arithmetic_parquet(root / "val.parquet", 4, seed=1)
    return {"model": model, "train": train, "val": val, "root": root}


def base_overrides(fx, out_dir, *extra):
    """A 2-step run on 2 CPU worker processes; every size tiny."""
    return [
        f"data.train_files={fx['train']}", f"data.val_files={fx['val']}",
        "data.train_batch_size=4", "data.max_prompt_length=32", "data.max_response_length=8",
        "data.dataloader_num_workers=0",  # verl's default of 8 loader processes costs more than these rows
        f"actor_rollout_ref.model.path={fx['model']}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.rollout.name=native", "actor_rollout_ref.rollout.n=2", "actor_rollout_ref.rollout.dtype=float32",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "critic.ppo_micro_batch_size_per_gpu=2", "critic.optim.lr=1e-3",
        "trainer.device=cpu", "trainer.n_gpus_per_node=2", "trainer.total_training_steps=2",
        "trainer.logger=[console,file]", f"trainer.default_local_dir={out_dir}", "trainer.val_before_train=false",
        "trainer.test_freq=2", "trainer.project_name=t", "trainer.experiment_name=t", "ray_init.num_cpus=4",
        *extra,
    ]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for one test module (4 CPUs, one OpenMP thread per worker), shut down after it."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()


def read_log(out_dir):
    """The records of a run's ``metrics.jsonl``."""
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]
