"""Checks of a whole :class:`PPOConfig` that need more than one key; all run before Ray starts.

Each failure is a :class:`ConfigError` that names the key(s) and the fix.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from verl.trainer.config.compat import model_parallel_size, per_gpu_sizes
from verl.trainer.config.schema import PPOConfig
from verl.utils.config import ConfigError

__all__ = ["resolve_device", "resolve_execution_mode", "uses_critic", "uses_reference", "validate_config", "world_size"]

GROUP_ESTIMATORS = ("grpo", "grpo_passk", "rloo", "opo", "gpg", "reinforce_plus_plus_baseline")
LOGGERS = ("console", "file", "tensorboard", "wandb", "mlflow", "swanlab")


def resolve_device(config: PPOConfig) -> str:
    """``cuda`` or ``cpu`` from ``trainer.device`` (``auto`` picks cuda when present)."""
    import torch

    device = config.trainer.device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"  # device-ok: resolving the user's choice
    return device


def resolve_execution_mode(config: PPOConfig) -> str:
    """``local`` or ``ray`` from ``trainer.execution_mode`` (``auto``: local for one worker process when no Ray
    cluster is named)."""
    mode = config.trainer.execution_mode
    if mode != "auto":
        return mode
    cluster = config.ray_kwargs.ray_init.address or config.ray_init.address or os.environ.get("RAY_ADDRESS")
    return "local" if world_size(config) == 1 and not cluster else "ray"


def world_size(config: PPOConfig) -> int:
    return config.trainer.nnodes * config.trainer.n_gpus_per_node


def uses_critic(config: PPOConfig) -> bool:
    if config.critic.enable is not None:
        return config.critic.enable
    return config.algorithm.adv_estimator == "gae"


def uses_reference(config: PPOConfig) -> bool:
    return config.algorithm.use_kl_in_reward or config.actor_rollout_ref.actor.use_kl_loss


def _nothing(*args) -> None:
    """Stands in for a check of this machine under ``check_environment=False``."""


def _check_files(key: str, files) -> None:
    if files is None:
        return
    for path in [files] if isinstance(files, str) else files:
        if not os.path.isfile(os.path.expanduser(path)):
            raise ConfigError(f"{key}: file {path!r} does not exist; prepare it with a preprocessor, e.g. "
                              "`python -m verl.data.preprocess.gsm8k --local_dir ~/data/gsm8k`")


def _check_model_dir(key: str, path: str) -> None:
    if not path:
        raise ConfigError(f"set {key} to a local model directory (config.json + weights + tokenizer)")
    if not os.path.isfile(os.path.join(os.path.expanduser(path), "config.json")):
        raise ConfigError(f"{key}={path!r} is not a local transformers model directory (no config.json in it); "
                          "models cannot be downloaded at run time, point it at a saved checkpoint")


def _check_vllm_cpu_head_size(model_path: str) -> None:
    """The head-size check of the vLLM backend, from config.json, before Ray starts."""
    import json

    from verl.rollout.vllm import check_cpu_head_size

    with open(os.path.join(os.path.expanduser(model_path), "config.json")) as f:
        try:
            check_cpu_head_size(json.load(f))
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _check_lora(config: PPOConfig, check_environment: bool = True) -> None:
    """LoRA keys, and the targets against the model's modules (built on the meta device: no weights read)."""
    from verl.workers.lora import LoraSpec, describe_lora

    model = config.actor_rollout_ref.model
    adapter = model.lora_adapter_path or (model.lora or {}).get("adapter_path")
    if not check_environment and adapter and not os.path.isdir(os.path.expanduser(adapter)):
        return  # --cfg job: the adapter is read when the run starts
    try:
        spec = LoraSpec.from_model_config(model, "actor_rollout_ref.model")
        if spec is not None and os.path.isdir(os.path.expanduser(model.path)):  # --cfg job: the model may be elsewhere
            describe_lora(model.path, spec, model.trust_remote_code)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_batch_sizes(config: PPOConfig, ranks: int) -> None:
    data, arr = config.data, config.actor_rollout_ref
    actor, n = arr.actor, arr.rollout.n
    if data.train_batch_size < 1:
        raise ConfigError(f"data.train_batch_size={data.train_batch_size} must be >= 1")
    if actor.ppo_mini_batch_size > data.train_batch_size or data.train_batch_size % actor.ppo_mini_batch_size:
        raise ConfigError(
            f"data.train_batch_size={data.train_batch_size} must be a multiple of "
            f"actor_rollout_ref.actor.ppo_mini_batch_size={actor.ppo_mini_batch_size} (prompts per optimizer step)"
        )
    sections = [("actor_rollout_ref.actor", actor)]
    if uses_critic(config):
        sections.append(("critic", config.critic))
    for name, sec in sections:
        dp = ranks // model_parallel_size(sec)  # a sequence/tensor-parallel group shares one slice
        per_rank, rem = divmod(sec.ppo_mini_batch_size * n, dp)
        if rem:
            raise ConfigError(
                f"{name}.ppo_mini_batch_size={sec.ppo_mini_batch_size} x rollout.n={n} trajectories do not split "
                f"over {dp} ranks (data-parallel: trainer.nnodes x trainer.n_gpus_per_node / "
                f"({name}.ulysses_sequence_parallel_size x {name}.megatron.tensor_model_parallel_size)); use a "
                f"multiple of {dp}"
            )
        if not sec.use_dynamic_bsz:
            micro = sec.ppo_micro_batch_size_per_gpu or per_gpu_sizes(config, ranks).get(name, {}).get(
                "ppo_micro_batch_size_per_gpu")
            if micro is None:
                raise ConfigError(f"set {name}.ppo_micro_batch_size_per_gpu (or {name}.use_dynamic_bsz=true)")
            if micro > per_rank:
                raise ConfigError(
                    f"{name}.ppo_micro_batch_size_per_gpu={micro} is larger than the {per_rank} trajectories of one "
                    f"mini-batch per rank; lower it or raise {name}.ppo_mini_batch_size"
                )
        elif sec.ppo_max_token_len_per_gpu < data.max_prompt_length + data.max_response_length:
            raise ConfigError(
                f"{name}.ppo_max_token_len_per_gpu={sec.ppo_max_token_len_per_gpu} cannot hold one sequence of "
                f"data.max_prompt_length + data.max_response_length = {data.max_prompt_length + data.max_response_length} tokens"
            )


def _hf_config(path: str | None):
    """The ``config.json`` of the model directory ``path`` (its ``text_config`` for a multimodal model) as a
    namespace, or ``None`` when there is no path or no such file (the model checks then run in the workers)."""
    config_file = os.path.join(os.path.expanduser(path), "config.json") if path else ""
    if not os.path.isfile(config_file):
        return None
    import json
    from types import SimpleNamespace

    with open(config_file) as f:
        hf = json.load(f)
    return SimpleNamespace(**hf.get("text_config", hf))


def _trained_sections(config: PPOConfig) -> list[tuple[str, Any, Any]]:
    """``(key prefix, section, model section)`` of the actor and, when used, the critic."""
    arr = config.actor_rollout_ref
    sections = [("actor_rollout_ref.actor", arr.actor, arr.model)]
    if uses_critic(config):
        sections.append(("critic", config.critic, config.critic.model))
    return sections


def _check_sequence_parallel(config: PPOConfig, ranks: int, check_environment: bool) -> None:
    """Ulysses degrees: dividing the worker group, packed forwards, and (with the model at hand) the head counts."""
    arr = config.actor_rollout_ref
    for name, sec, model in _trained_sections(config):
        sp, key = sec.ulysses_sequence_parallel_size, f"{name}.ulysses_sequence_parallel_size"
        if sp == 1:
            continue
        if ranks % sp:
            raise ConfigError(f"{key}={sp} must divide the {ranks} ranks of the worker group "
                              "(trainer.nnodes x trainer.n_gpus_per_node)")
        if not model.use_remove_padding:
            model_key = "actor_rollout_ref.model" if name.startswith("actor") else "critic.model"
            raise ConfigError(f"{key}={sp} splits packed sequences: set {model_key}.use_remove_padding=true")
        hf = _hf_config((model.path or arr.model.path) if check_environment else None)
        if hf is not None:
            from verl.workers.parallel.ulysses import check_heads

            try:
                check_heads(hf, sp, key)
            except ValueError as err:
                raise ConfigError(str(err)) from None


def _check_tensor_parallel(config: PPOConfig, ranks: int, check_environment: bool) -> None:
    """Training tensor-parallel degrees (``*.megatron.tensor_model_parallel_size``): dividing the worker group, not
    combined with Ulysses, and (with the model at hand) dividing the head counts and the MLP width."""
    arr = config.actor_rollout_ref
    for name, sec, model in _trained_sections(config):
        tp, key = sec.megatron.tensor_model_parallel_size, f"{name}.megatron.tensor_model_parallel_size"
        if tp == 1:
            continue
        if ranks % tp:
            raise ConfigError(f"{key}={tp} must divide the {ranks} ranks of the worker group "
                              "(trainer.nnodes x trainer.n_gpus_per_node)")
        if sec.ulysses_sequence_parallel_size > 1:
            raise ConfigError(f"{key}={tp} together with {name}.ulysses_sequence_parallel_size="
                              f"{sec.ulysses_sequence_parallel_size} is not available; use one of the two")
        if name.startswith("actor") and arr.model.lora_rank > 0:
            raise ConfigError(f"{key}={tp} with LoRA (actor_rollout_ref.model.lora_rank > 0) is not available")
        fsdp_key = f"{name}.fsdp_config" if name.startswith("actor") else "critic.model.fsdp_config"
        fsdp_size = (sec.fsdp_config if name.startswith("actor") else model.fsdp_config).fsdp_size
        if 0 < fsdp_size < ranks // tp:
            raise ConfigError(f"{key}={tp} with {fsdp_key}.fsdp_size={fsdp_size} (hybrid sharding) is not available; "
                              "leave fsdp_size=-1")
        hf = _hf_config((model.path or arr.model.path) if check_environment else None)
        if hf is not None:
            from verl.workers.parallel.tensor_parallel import check_tensor_parallel

            try:
                check_tensor_parallel(hf, tp, key)
            except ValueError as err:
                raise ConfigError(str(err)) from None


def _check_rollout_parallel(config: PPOConfig, ranks: int, check_environment: bool) -> None:
    """Rollout tensor parallelism (native or vLLM engine): backend, dividing the worker group, and (with the model
    at hand) heads divisible by the degree."""
    from verl.rollout.parallel import KEY, check_tp_config, check_tp_model

    rollout = config.actor_rollout_ref.rollout
    tp = rollout.tensor_model_parallel_size
    try:
        check_tp_config(tp, ranks, rollout.name, rollout.multi_turn.enable)
        hf = _hf_config(config.actor_rollout_ref.model.path if check_environment and tp > 1 else None)
        if hf is not None:
            check_tp_model(hf, tp, rollout.name, KEY)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_algorithm(config: PPOConfig) -> None:
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, KL_PENALTY_TYPES, LOSS_AGG_MODES, POLICY_LOSS_REGISTRY

    alg, actor, n = config.algorithm, config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout.n
    if alg.adv_estimator not in ADV_ESTIMATOR_REGISTRY:
        raise ConfigError(f"algorithm.adv_estimator={alg.adv_estimator!r} is unknown; known: {sorted(ADV_ESTIMATOR_REGISTRY)}")
    if alg.adv_estimator == "grpo_passk" and n < 2:
        raise ConfigError("algorithm.adv_estimator=grpo_passk compares responses of one prompt: set "
                          "actor_rollout_ref.rollout.n >= 2")
    if alg.adv_estimator in GROUP_ESTIMATORS and n < 2:  # verl runs these: each group is one response
        import logging

        logging.getLogger(__name__).warning(
            "algorithm.adv_estimator=%s with actor_rollout_ref.rollout.n=%d: every group holds one response, so the "
            "baseline is 0 or the response itself (see docs/algo/baselines.md, 'Groups of one'); set rollout.n >= 2 "
            "to compare responses of one prompt", alg.adv_estimator, n)
    if alg.adv_estimator == "gae" and config.critic.enable is False:
        raise ConfigError("algorithm.adv_estimator=gae needs the critic; remove critic.enable=false or pick grpo")
    if actor.policy_loss.loss_mode not in POLICY_LOSS_REGISTRY:
        raise ConfigError(f"actor_rollout_ref.actor.policy_loss.loss_mode={actor.policy_loss.loss_mode!r} is unknown; "
                          f"known: {sorted(POLICY_LOSS_REGISTRY)}")
    for key, mode in (("actor_rollout_ref.actor.loss_agg_mode", actor.loss_agg_mode), ("critic.loss_agg_mode", config.critic.loss_agg_mode)):
        if mode not in LOSS_AGG_MODES:
            raise ConfigError(f"{key}={mode!r} is unknown; use one of {list(LOSS_AGG_MODES)}")
    for key, kind in (("actor_rollout_ref.actor.kl_loss_type", actor.kl_loss_type), ("algorithm.kl_penalty", alg.kl_penalty)):
        if kind not in KL_PENALTY_TYPES:
            raise ConfigError(f"{key}={kind!r} is unknown; use one of {sorted(KL_PENALTY_TYPES)}")
    if alg.kl_ctrl.type not in ("fixed", "adaptive"):
        raise ConfigError(f"algorithm.kl_ctrl.type={alg.kl_ctrl.type!r}: use fixed or adaptive")
    if actor.tis_imp_ratio_cap > 0 and not config.actor_rollout_ref.rollout.calculate_log_probs:
        raise ConfigError("actor_rollout_ref.actor.tis_imp_ratio_cap needs actor_rollout_ref.rollout.calculate_log_probs=true")


def _check_trainer(config: PPOConfig, device: str, check_environment: bool = True) -> None:
    import torch

    tr = config.trainer
    if tr.device not in ("auto", "cuda", "cpu"):  # device-ok: a config value
        raise ConfigError(f"trainer.device={tr.device!r}: use cuda, cpu or auto")
    if check_environment and device == "cuda" and not torch.cuda.is_available():  # device-ok
        raise ConfigError("trainer.device=cuda but no GPU is visible to PyTorch; set trainer.device=cpu (or auto)")
    if tr.nnodes < 1 or tr.n_gpus_per_node < 1:
        raise ConfigError("trainer.nnodes and trainer.n_gpus_per_node must be >= 1")
    if tr.execution_mode not in ("auto", "local", "ray"):
        raise ConfigError(f"trainer.execution_mode={tr.execution_mode!r}: use auto, local or ray")
    if tr.execution_mode == "local" and world_size(config) != 1:
        raise ConfigError(f"trainer.execution_mode=local runs one worker process, but trainer.nnodes x "
                          f"trainer.n_gpus_per_node = {world_size(config)}; set both to 1 or use execution_mode=ray")
    if tr.execution_mode == "local" and (config.ray_kwargs.ray_init.address or config.ray_init.address):
        raise ConfigError("trainer.execution_mode=local runs without Ray, but ray_init.address names a cluster; "
                          "drop one of the two")
    if tr.placement not in ("colocate", "split"):
        raise ConfigError(f"trainer.placement={tr.placement!r}: use colocate or split")
    if tr.placement == "split" and tr.n_gpus_per_node < 2:
        raise ConfigError("trainer.placement=split needs trainer.n_gpus_per_node >= 2 (half for the actor, half for the critic)")
    unknown = [name for name in tr.logger if name not in LOGGERS]
    if unknown:
        raise ConfigError(f"trainer.logger has unknown backend(s) {unknown}; use any of {list(LOGGERS)}")
    if tr.resume_mode not in ("auto", "disable", "resume_path"):
        raise ConfigError(f"trainer.resume_mode={tr.resume_mode!r}: use auto, disable or resume_path")
    if tr.resume_mode == "resume_path" and not (tr.resume_from_path and (not check_environment or os.path.isdir(tr.resume_from_path))):
        raise ConfigError(f"trainer.resume_mode=resume_path needs trainer.resume_from_path to be an existing "
                          f"global_step_N directory, got {tr.resume_from_path!r}")
    if tr.total_training_steps is not None and tr.total_training_steps < 1:
        raise ConfigError("trainer.total_training_steps must be >= 1 (or null for total_epochs x batches)")


def _check_multi_turn(config: PPOConfig, check_environment: bool = True) -> None:
    key = "actor_rollout_ref.rollout.multi_turn"
    mt = config.actor_rollout_ref.rollout.multi_turn
    if not mt.enable:
        return
    if not config.data.return_raw_chat:
        raise ConfigError(f"{key}.enable=true renders each prompt from the raw chat messages with the tool schemas "
                          "listed: set data.return_raw_chat=true")
    for name in ("tool_config_path", "interaction_config_path"):
        path = getattr(mt, name)
        if check_environment and path is not None and not os.path.isfile(os.path.expanduser(path)):
            raise ConfigError(f"{key}.{name}={path!r} does not exist")


def validate_config(config: PPOConfig, check_environment: bool = True) -> None:
    """Raise :class:`ConfigError` for the first problem found. ``check_environment=False`` (``--cfg job``) skips
    the checks of this machine: files and model directories exist, a GPU is visible."""
    from verl.trainer.config.compat import check_fixed_keys
    from verl.trainer.config.features import check_features
    from verl.trainer.config.ranges import check_value_ranges

    check_value_ranges(config)  # every key's range and names first (grad_clip > 0, ppo_epochs >= 1, dtypes, ...)
    device = resolve_device(config)
    _check_trainer(config, device, check_environment)
    check_fixed_keys(config, world_size(config))
    check_features(config)
    arr = config.actor_rollout_ref
    check_dir, check_files = (_check_model_dir, _check_files) if check_environment else (_nothing, _nothing)
    check_dir("actor_rollout_ref.model.path", arr.model.path)
    _check_lora(config, check_environment)
    check_files("data.train_files", config.data.train_files)
    if check_environment and config.data.train_files is None:
        raise ConfigError("set data.train_files to one or more parquet files")
    check_files("data.val_files", config.data.val_files)
    if config.reward_model.enable:
        check_dir("reward_model.model.path", config.reward_model.model.path)
        if config.reward_model.model.input_tokenizer and not config.data.return_raw_chat:
            raise ConfigError("reward_model.model.input_tokenizer re-templates the chat for the reward model: set "
                              "data.return_raw_chat=true so the raw messages reach it")
    _check_multi_turn(config, check_environment)
    if uses_critic(config) and config.critic.model.path:
        check_dir("critic.model.path", config.critic.model.path)
    if check_environment and config.custom_reward_function.path and not os.path.isfile(config.custom_reward_function.path):
        raise ConfigError(f"custom_reward_function.path={config.custom_reward_function.path!r} does not exist")
    try:
        # as the workers get it: the rollout's lengths follow data.max_*_length (RayPPOTrainer._worker_config), so
        # max_model_len is checked against the real prompt length
        dataclasses.replace(arr.rollout, prompt_length=config.data.max_prompt_length,
                            response_length=config.data.max_response_length).validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if check_environment and arr.rollout.name == "vllm" and resolve_device(config) == "cpu":
        _check_vllm_cpu_head_size(arr.model.path)
    if config.data.max_prompt_length < 1 or config.data.max_response_length < 1:
        raise ConfigError("data.max_prompt_length and data.max_response_length must be >= 1")
    _check_algorithm(config)
    ranks = world_size(config) // (2 if config.trainer.placement == "split" else 1)  # of one worker group
    _check_sequence_parallel(config, ranks, check_environment)
    _check_tensor_parallel(config, ranks, check_environment)
    _check_batch_sizes(config, ranks)
    _check_rollout_parallel(config, ranks, check_environment)
