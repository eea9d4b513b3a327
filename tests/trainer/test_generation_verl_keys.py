"""verl's ``generation.yaml`` keys for ``main_generation``: every key known; the ones this library cannot run
refused naming the key; Ray's keys reach ``ray.init``."""

from pathlib import Path

import pytest

from verl.trainer.main_generation import GenerationConfig
from verl.utils.cli import load_cli_config
from verl.utils.config import ConfigError, iter_fields

KEYS = Path(__file__).with_name("verl_examples") / "verl_generation_keys.txt"


def test_every_key_of_verls_generation_config_is_known():
    ours = {key for key, _, _ in iter_fields(GenerationConfig)}
    verl = [k for k in KEYS.read_text().splitlines() if k and not k.startswith("#")]
    assert [k for k in verl if k not in ours] == []


def test_verls_generation_values_are_accepted():
    cfg = load_cli_config(GenerationConfig, [
        "--config-name", "generation", "actor.strategy=fsdp", "actor.ulysses_sequence_parallel_size=2",
        "actor.fsdp_config.fsdp_size=-1", "actor.fsdp_config.forward_prefetch=false", "rollout.mode=async",
        "rollout.top_k=50", "rollout.top_p=0.7", "rollout.temperature=1.0", "rollout.log_prob_micro_batch_size_per_gpu=8",
        "ray_kwargs.ray_init.num_cpus=2", "ray_kwargs.timeline_json_file=/tmp/t.json", "data.n_samples=5"])
    assert cfg.validate().ray_kwargs.ray_init.num_cpus == 2 and cfg.actor.ulysses_sequence_parallel_size == 2


@pytest.mark.parametrize("override,message", [
    ("actor.strategy=megatron", "actor.strategy='megatron'"),
    ("rollout.tensor_model_parallel_size=2", "rollout.tensor_model_parallel_size=2"),
    ("rollout.data_parallel_size=2", "rollout.data_parallel_size=2 is not supported"),
    ("rollout.quantization=fp8", "rollout.quantization='fp8' is not supported"),
])
def test_what_cannot_run_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_cli_config(GenerationConfig, [override]).validate()
