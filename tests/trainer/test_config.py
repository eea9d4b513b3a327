"""The PPO config: CLI parsing, defaults, and bad configs rejected before Ray starts, naming the key."""

import sys
from importlib.util import find_spec

import pytest

from verl.trainer.config import PPOConfig, dump_yaml, format_help, load_config, validate_config
from verl.utils.config import ConfigError

sys.path.insert(0, __file__.rsplit("/", 1)[0])


def overrides(fx, tmp_path, *extra):
    from conftest import base_overrides

    return base_overrides(fx, tmp_path / "out", *extra)


def test_cli_values_are_typed_and_nested_defaults_kept():
    cfg = load_config(["actor_rollout_ref.actor.optim.lr=3e-6", "critic.optim.lr_warmup_steps=5",
                       "+actor_rollout_ref.model.override_config.attention_dropout=0.1", "trainer.logger=[console,file]",
                       "data.train_files=[a.parquet,b.parquet]", "trainer.total_training_steps=null"])
    assert cfg.actor_rollout_ref.actor.optim.lr == 3e-6
    assert cfg.critic.optim.lr == 1e-5, "the critic's own default survives an override of a sibling key"
    assert cfg.critic.optim.lr_warmup_steps == 5
    assert cfg.actor_rollout_ref.model.override_config == {"attention_dropout": 0.1}
    assert cfg.trainer.logger == ["console", "file"] and cfg.data.train_files == ["a.parquet", "b.parquet"]
    assert cfg.trainer.total_training_steps is None
    assert PPOConfig().critic.optim.lr == 1e-5


def test_yaml_file_then_cli(tmp_path):
    (tmp_path / "mine.yaml").write_text("trainer:\n  total_epochs: 3\n  project_name: from_yaml\n")
    cfg = load_config(["--config-path", str(tmp_path), "--config-name", "mine", "trainer.total_epochs=4"])
    assert cfg.trainer.total_epochs == 4 and cfg.trainer.project_name == "from_yaml"


def test_help_lists_keys_with_meaning():
    text = format_help()
    assert "actor_rollout_ref.actor.ppo_mini_batch_size = 256" in text
    assert "Prompts per optimizer step, globally" in text
    assert "algorithm.adv_estimator" in text and "trainer.save_freq" in text


def test_shipped_yaml_matches_the_schema_defaults():
    from pathlib import Path

    import verl.trainer.config as pkg

    shipped = Path(pkg.__file__).with_name("ppo_trainer.yaml").read_text()
    assert shipped == dump_yaml(), "regenerate with: python -m verl.trainer.config > verl/trainer/config/ppo_trainer.yaml"


PARSE_ERRORS = [
    (["actor_rollout_ref.actor.ppo_mini_batch_sz=3"], "did you mean actor_rollout_ref.actor.ppo_mini_batch_size"),
    (["trainer.total_epochs=abc"], "trainer.total_epochs must be an integer"),
    (["algorithm.gamma=[1,2]"], "algorithm.gamma must be a number"),
    (["critic.optim=3"], "critic.optim is a section"),
    (["data.shuffle=maybe"], "data.shuffle must be true or false"),
    (["trainer"], "overrides look like key=value"),
]


@pytest.mark.parametrize("argv,message", PARSE_ERRORS)
def test_parse_errors_name_the_key(argv, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(argv)


BAD_CONFIGS = [
    (["data.train_batch_size=3"], "data.train_batch_size=3 must be a multiple of actor_rollout_ref.actor.ppo_mini_batch_size"),
    (["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"], "ppo_micro_batch_size_per_gpu=8 is larger than"),
    (["actor_rollout_ref.actor.ppo_mini_batch_size=1", "actor_rollout_ref.rollout.n=1",
      "algorithm.adv_estimator=reinforce_plus_plus", "data.train_batch_size=3"], "do not split over 2 ranks"),
    (["actor_rollout_ref.rollout.n=1", "algorithm.adv_estimator=grpo_passk"], "set actor_rollout_ref.rollout.n >= 2"),
    (["actor_rollout_ref.rollout.temperature=0"], "temperature=0.0 with do_sample=true"),
    (["trainer.device=cuda"], "no GPU is visible"),
    (["data.train_files=/nope/train.parquet"], "data.train_files: file '/nope/train.parquet' does not exist"),
    (["actor_rollout_ref.model.path=/nope"], "actor_rollout_ref.model.path='/nope' is not a local transformers model"),
    (["algorithm.adv_estimator=magic"], "algorithm.adv_estimator='magic' is unknown"),
    (["actor_rollout_ref.actor.policy_loss.loss_mode=nope"], "policy_loss.loss_mode='nope' is unknown"),
    (["actor_rollout_ref.actor.loss_agg_mode=mean"], "loss_agg_mode='mean' is unknown"),
    (["trainer.logger=[console,slack]"], "unknown backend(s) ['slack']"),
    (["trainer.resume_mode=resume_path"], "needs trainer.resume_from_path"),
    (["critic.ppo_micro_batch_size_per_gpu=null", "algorithm.adv_estimator=gae"], "set critic.ppo_micro_batch_size_per_gpu"),
    (["actor_rollout_ref.actor.tis_imp_ratio_cap=2.0"], "needs actor_rollout_ref.rollout.calculate_log_probs=true"),
    (["custom_reward_function.path=/nope.py"], "custom_reward_function.path='/nope.py' does not exist"),
    (["actor_rollout_ref.rollout.name=sglang"], "SGLang cannot be installed beside this library"),
    *([(["actor_rollout_ref.rollout.name=vllm", "trainer.device=cpu"],
        "vLLM's CPU attention has no kernel for this model's head_dim=16")] if find_spec("vllm") else
      [(["actor_rollout_ref.rollout.name=vllm"], "name=vllm but vLLM is not installed")]),
    (["actor_rollout_ref.rollout.load_format=npz"], "actor_rollout_ref.rollout.load_format='npz'"),
]


@pytest.mark.parametrize("extra,message", BAD_CONFIGS, ids=[m[:40] for _, m in BAD_CONFIGS])
def test_bad_configs_fail_before_ray_naming_the_key(ppo_fixture, tmp_path, extra, message, capsys):
    import ray

    if "cuda" in " ".join(extra):
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    argv = overrides(ppo_fixture, tmp_path, "algorithm.adv_estimator=grpo", *extra)
    with pytest.raises(ConfigError) as err:
        validate_config(load_config(argv))
    assert message in str(err.value)
    from verl.trainer.main_ppo import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not ray.is_initialized(), "the config was rejected before Ray started"


def test_reward_model_retemplating_needs_raw_chat(ppo_fixture, tmp_path):
    argv = overrides(ppo_fixture, tmp_path, "algorithm.adv_estimator=grpo", "reward_model.enable=true",
                     f"reward_model.model.path={ppo_fixture['model']}",
                     f"reward_model.model.input_tokenizer={ppo_fixture['model']}")
    with pytest.raises(ConfigError, match="set data.return_raw_chat=true"):
        validate_config(load_config(argv))
    validate_config(load_config([*argv, "data.return_raw_chat=true"]))


def test_execution_mode_auto_is_local_for_one_worker_process(monkeypatch):
    from verl.trainer.config import resolve_execution_mode

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    one = ["trainer.nnodes=1", "trainer.n_gpus_per_node=1"]
    assert resolve_execution_mode(load_config(one)) == "local"
    assert resolve_execution_mode(load_config(["trainer.n_gpus_per_node=2"])) == "ray"
    assert resolve_execution_mode(load_config([*one, "ray_init.address=auto"])) == "ray"
    assert resolve_execution_mode(load_config([*one, "trainer.execution_mode=ray"])) == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_execution_mode(load_config(one)) == "ray", "a named cluster means Ray"
    assert resolve_execution_mode(load_config([*one, "trainer.execution_mode=local"])) == "local"


@pytest.mark.parametrize("extra,message", [
    (["trainer.execution_mode=threads"], "use auto, local or ray"),
    (["trainer.execution_mode=local", "trainer.n_gpus_per_node=2"], "runs one worker process"),
    (["trainer.execution_mode=local", "trainer.n_gpus_per_node=1", "ray_init.address=auto"], "ray_init.address"),
])  # fmt: skip
def test_execution_mode_errors_name_the_key(ppo_fixture, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(load_config(overrides(ppo_fixture, tmp_path, "algorithm.adv_estimator=grpo", *extra)))


def test_group_estimators_with_one_response_per_prompt_run_as_in_verl(ppo_fixture, tmp_path, caplog):
    # verl runs GRPO / RLOO with rollout.n=1 (groups of one); only pass@k needs two responses
    for estimator in ("grpo", "rloo"):
        validate_config(load_config(overrides(ppo_fixture, tmp_path, f"algorithm.adv_estimator={estimator}",
                                              "actor_rollout_ref.rollout.n=1",
                                              "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1")))
    assert "every group holds one response" in caplog.text
