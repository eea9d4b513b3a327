"""verl's SFT / generation / evaluation command lines: config names, ``--cfg job``, group syntax, and the SFT keys
of verl's ``sft_trainer.yaml`` (global micro-batch size, sample limits, refused capabilities named)."""

import pytest
import yaml

from verl.data.sft_dataset import SFTDataConfig
from verl.trainer.fsdp_sft_trainer import parse_config
from verl.utils.config import ConfigError

SFT = ["model.partial_pretrain=/models/m", "data.train_files=/data/train.parquet"]


def test_sft_cfg_job_prints_the_checked_config(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(["--cfg", "job", "--config-name", "sft_trainer", "optim=fsdp", "optim.lr=1e-4",
                      "data.micro_batch_size=8", "+model.override_config.rope_theta=3", *SFT])
    assert stop.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 1e-4 and printed["data"]["micro_batch_size"] == 8
    with pytest.raises(ConfigError, match="model.use_liger=true: Liger kernels are not integrated"):
        parse_config(["--cfg", "job", "model.use_liger=true", *SFT])
    with pytest.raises(ConfigError, match="another entry point"):
        parse_config(["--config-name", "ppo_trainer", *SFT])


def test_global_micro_batch_size_is_divided_over_ranks():
    assert SFTDataConfig(micro_batch_size=8).micro_batch_per_gpu(4) == 2
    assert SFTDataConfig(micro_batch_size_per_gpu=3).micro_batch_per_gpu(4) == 3


@pytest.mark.parametrize("override,message", [
    ("data.balance_dp_token=true", "data.balance_dp_token=True is not available"),
    ("data.use_shm=true", "data.use_shm=True is not available"),
    ("model.fsdp_config.cpu_offload=true", "cpu_offload / offload_params are not supported"),
    ("trainer.default_hdfs_dir=hdfs://x", "trainer.default_hdfs_dir: HDFS is not available"),
])
def test_refused_sft_keys_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        parse_config([override, *SFT]).validate(1)


def test_generation_and_evaluation_read_verls_config_names(capsys):
    from verl.trainer.main_eval import EvalConfig
    from verl.trainer.main_generation import GenerationConfig
    from verl.utils.cli import load_cli_config

    assert load_cli_config(GenerationConfig, ["--config-name", "generation"]) == GenerationConfig()
    assert load_cli_config(EvalConfig, ["--config-path=config", "--config-name=evaluation"]) == EvalConfig()
