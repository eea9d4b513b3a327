"""verl's keys for capabilities this library does not have, in one place.

Every key of verl's config is in the schema. Most do what verl's do. The rest fall in two tables here:

- :data:`FIXED`: the key works only at the listed values (verl's default, which is what this library does);
  any other value is refused before anything starts, with a message naming the key, why, and what to use.
- :data:`SAME_EITHER_WAY`: the key selects between behaviours that are the same here (e.g. a memory-saving
  kernel this library always uses), or it is a setting of a feature :data:`FIXED` keeps off. Any value is
  accepted; the reason is printed in ``docs/examples/config.md``.

``tests/trainer/test_config_coverage.py`` checks that every schema key is read by the code, or is in one of
these tables (and that each FIXED rule refuses a value).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from verl.utils.config import ConfigError, iter_fields

__all__ = ["FIXED", "GLOBAL_MICRO_BATCHES", "SAME_EITHER_WAY", "check_fixed_keys", "fixed_rule", "model_parallel_size",
           "per_gpu_sizes", "same_either_way_reason"]

_NO_TP = "tensor/sequence parallelism is not available yet (issue 17)"
_NO_VLM = "vision-language models are not supported"
_NO_MEGATRON = ("not available (Megatron-LM does not run here; only megatron.tensor_model_parallel_size maps onto "
                "torch-native tensor parallelism x FSDP2)")

#: ``pattern: (accepted values, why not others and what to use)``; patterns match dotted keys (``*`` = any part).
FIXED: dict[str, tuple[tuple[Any, ...], str]] = {
    "*.fsdp_config.wrap_policy.min_num_params": ((0,), "FSDP2 here shards each decoder layer, then the root; a "
                                                "parameter-count wrap policy is not available"),
    "*.fsdp_config.offload_policy": ((False,), "FSDP2's CPUOffloadPolicy is not wired up; use fsdp_config.param_offload "
                                     "and fsdp_config.optimizer_offload (offload between phases)"),
    "reward_model.ulysses_sequence_parallel_size": ((1,), "Ulysses sequence parallelism is not available for the "
                                                    "reward model (the actor, reference and critic have it)"),
    "reward_model.model.fsdp_config.ulysses_sequence_parallel_size": ((1,), "Ulysses sequence parallelism is not "
                                                                      "available for the reward model"),
    "critic.model.fsdp_config.ulysses_sequence_parallel_size": ((1,), "set critic.ulysses_sequence_parallel_size "
                                                                "(the critic's Ulysses degree) instead"),
    "reward_model.strategy": (("fsdp", "fsdp2"), "the reward model runs FSDP2 (no tensor parallelism)"),
    "*.strategy": (("fsdp", "fsdp2", "megatron"), "both FSDP spellings run FSDP2; megatron runs torch-native tensor "
                   "parallelism (*.megatron.tensor_model_parallel_size) x FSDP2, not Megatron-LM"),
    # verl's Megatron keys: tensor parallelism and offload map onto FSDP2 here; the rest is refused
    "*.megatron.pipeline_model_parallel_size": ((1,), f"pipeline parallelism: {_NO_MEGATRON}"),
    "*.megatron.virtual_pipeline_model_parallel_size": ((None,), f"virtual pipeline stages: {_NO_MEGATRON}"),
    "*.megatron.expert_model_parallel_size": ((1,), f"expert parallelism: {_NO_MEGATRON}"),
    "*.megatron.expert_tensor_parallel_size": ((None, 1), f"expert tensor parallelism: {_NO_MEGATRON}"),
    "*.megatron.context_parallel_size": ((1,), "Megatron's context parallelism is not available; split long "
                                         "sequences with *.ulysses_sequence_parallel_size (Ulysses) instead"),
    "*.megatron.use_dist_checkpointing": ((False,), "checkpoints are torch.distributed.checkpoint shards; Megatron's "
                                          "dist-checkpointing format is not read"),
    "*.megatron.dtype": (("bfloat16",), "the compute dtype is fsdp_config.mixed_precision.param_dtype here"),
    "*.fsdp_config.dtype": (("bfloat16",), "the compute dtype is fsdp_config.mixed_precision.param_dtype "
                            "(bf16, fp16 or fp32) here; set that key"),
    "actor_rollout_ref.actor.fsdp_config.forward_only": ((False,), "the actor trains"),
    "critic.model.fsdp_config.forward_only": ((False,), "the critic trains"),
    "actor_rollout_ref.ref.fsdp_config.forward_only": ((True,), "the reference model is never trained"),
    "reward_model.model.fsdp_config.forward_only": ((True,), "the reward model is never trained"),
    "*.checkpoint.async_save": ((False,), "checkpoints are written synchronously and published atomically"),
    "critic.model.lora_rank": ((0,), "LoRA on the critic is not available; train the critic fully (the policy's "
                               "LoRA is actor_rollout_ref.model.lora_rank)"),
    "data.use_shm": ((False,), "data files are read from local disk (models: model.use_shm works)"),
    "*.model.enable_activation_offload": ((False,), "activation offload is not available; use "
                                          "model.enable_gradient_checkpointing=true"),
    "*.tiled_mlp.enabled": ((False,), "tiled MLP is not available; use gradient checkpointing or shorter sequences"),
    "actor_rollout_ref.model.use_liger": ((False,), "Liger kernels are not integrated; the log-prob kernel here "
                                          "already avoids materialising fp32 logits"),
    "actor_rollout_ref.model.hf_config_path": ((None,), "put the config.json you want in the model directory"),
    "*.mtp.enable": ((False,), "multi-token prediction is not available"),
    "*.mtp.enable_train": ((False,), "multi-token prediction is not available"),
    "*.mtp.enable_rollout": ((False,), "speculative decoding with MTP heads is not available"),
    "*.fused_kernel_options.impl_backend": (("torch", "triton"), "verl's two backends"),
    "actor_rollout_ref.actor.freeze_vision_tower": ((False,), _NO_VLM),
    "actor_rollout_ref.actor.use_prefix_grouper": ((False,), "prefix-shared training forwards are not available"),
    "actor_rollout_ref.actor.calculate_sum_pi_squared": ((False,), "the optimal-baseline estimator is not available"),
    "*.router_replay.mode": (("disabled",), "MoE router replay is not available"),
    "actor_rollout_ref.rollout.data_parallel_size": ((1,), "each rank runs one full rollout replica"),
    "actor_rollout_ref.rollout.expert_parallel_size": ((1,), f"expert parallelism: {_NO_TP}"),
    "actor_rollout_ref.rollout.pipeline_model_parallel_size": ((1,), f"pipeline parallelism: {_NO_TP}"),
    "actor_rollout_ref.rollout.logprobs_mode": (("processed_logprobs",), "rollout_log_probs are log-softmax of the "
                                                "temperature-scaled logits, as the trainer computes them"),
    "actor_rollout_ref.rollout.scheduling_policy": (("fcfs",), "the engines schedule first come, first served"),
    "actor_rollout_ref.rollout.over_sample_rate": ((0, 0.0), "aborting the slowest requests is not available"),
    "actor_rollout_ref.rollout.checkpoint_engine.backend": (("naive",), "weights move to the engine in process"),
    "actor_rollout_ref.rollout.trace.backend": ((None,), "rollout tracing (weave/mlflow) is not available; "
                                                "use trainer.rollout_data_dir to dump generations"),
    "actor_rollout_ref.rollout.skip_rollout": ((False,), "replaying dumped rollouts is not available"),
    "actor_rollout_ref.rollout.enable_rollout_routing_replay": ((False,), "MoE router replay is not available"),
    "actor_rollout_ref.rollout.prometheus.enable": ((False,), "the engines run in process, without a metrics server"),
    "actor_rollout_ref.rollout.quantization": ((None,), "quantised rollout weights are not available"),
    "actor_rollout_ref.rollout.quantization_config_file": ((None,), "quantised rollout weights are not available"),
    "actor_rollout_ref.rollout.cudagraph_capture_sizes": ((None,), "set vLLM's capture sizes with "
                                                          "+actor_rollout_ref.rollout.engine_kwargs.vllm.compilation_config"),
    "data.sampler.class_path": ((None,), "custom samplers are not available; data.shuffle and data.seed choose the order"),
    "data.datagen.path": ((None,), "dynamic data generation is not available"),
    "reward_model.enable_resource_pool": ((False,), "roles are placed by trainer.placement (colocate or split)"),
    "reward_model.reward_loop_source": (("register",), "reward managers are chosen by name (reward_model.reward_manager)"),
    "reward_model.reward_loop_module_path": ((None,), "use reward_model.reward_manager or custom_reward_function.path"),
    "reward_model.sandbox_fusion.url": ((None,), "code rewards run in this library's local sandbox"),
    "reward_manager.source": (("register",), "custom manager classes: register one with "
                              "verl.workers.reward_manager.register and name it in reward_model.reward_manager"),
    "algorithm.use_pf_ppo": ((False,), "policy-filtration PPO is not available"),
    "trainer.default_hdfs_dir": ((None,), "HDFS is not available; checkpoints stay in trainer.default_local_dir"),
    "trainer.esi_redundant_time": ((0,), "expiry-triggered saving is not available; use trainer.save_freq"),
    "trainer.use_legacy_worker_impl": (("auto", "enable", "disable"), "verl's three values; one implementation runs"),
    "transfer_queue.enable": ((False,), "batches travel with the worker calls"),
    "actor_rollout_ref.rollout.agent.default_agent_loop": (("single_turn_agent",), "each sample's agent_name column "
                                                           "picks its loop (tool_agent for multi-turn with tools)"),
    "actor_rollout_ref.rollout.agent.agent_loop_config_path": ((None,), "custom agent loops are not available"),
    "actor_rollout_ref.rollout.agent.custom_async_server.path": ((None,), "rollout servers are not used here"),
    "actor_rollout_ref.hybrid_engine": ((True,), "actor and rollout always share one process and its weights here"),
    "*.profiler.tool_config.torch.discrete": ((False,), "one trace per profiled step and process"),
}

#: ``pattern: why any value is accepted``.
SAME_EITHER_WAY: dict[str, str] = {
    "critic.model.lora_alpha": "a setting of critic LoRA, which critic.model.lora_rank keeps off",
    "critic.model.target_modules": "a setting of critic LoRA, which critic.model.lora_rank keeps off",
    "*.fsdp_config.use_orig_params": "an FSDP1 option; FSDP2 always keeps the original parameters",
    "*entropy_from_logits_with_chunking": "the log-prob/entropy kernel here always works in row chunks",
    "*entropy_checkpointing": "the log-prob/entropy kernel here always recomputes softmax in backward",
    "*use_torch_compile": "the training forward is not compiled here (verl compiles only its entropy function)",
    "*use_fused_kernels": "log-probs and entropy always come from this library's memory-lean kernel",
    "*.fused_kernel_options.impl_backend": "see use_fused_kernels",
    "actor_rollout_ref.rollout.skip_tokenizer_init": "the engines exchange token ids either way",
    "actor_rollout_ref.rollout.multi_stage_wake_up": "a peak-memory option of verl's server engines' wake-up; the "
                                                      "engines here wake in one step either way",
    "actor_rollout_ref.rollout.skip_dump_dir": "read only with skip_rollout (refused)",
    "actor_rollout_ref.rollout.checkpoint_engine.*": "weights move to the engine in process (backend naive)",
    "actor_rollout_ref.rollout.trace.*": "read only with trace.backend (refused)",
    "actor_rollout_ref.rollout.prometheus.*": "read only with prometheus.enable (refused)",
    "*.mtp.*": "read only with mtp.enable (refused)",
    "*.tiled_mlp.num_shards": "read only with tiled_mlp.enabled (refused)",
    "*.router_replay.*": "read only with a router-replay mode (refused)",
    "actor_rollout_ref.actor.tau_pos": "read only by policy_loss.loss_mode=sapo (not registered here)",
    "actor_rollout_ref.actor.tau_neg": "read only by policy_loss.loss_mode=sapo (not registered here)",
    "actor_rollout_ref.actor.sum_pi_squared_checkpointing": "read only with calculate_sum_pi_squared (refused)",
    "data.image_patch_size": f"read only for image/video rows ({_NO_VLM})",
    "data.return_multi_modal_inputs": f"read only for image/video rows ({_NO_VLM})",
    "data.video_key": f"read only for video rows ({_NO_VLM})",
    "data.sampler.class_name": "read only with data.sampler.class_path (refused)",
    "data.datagen.name": "read only with data.datagen.path (refused)",
    "reward_model.n_gpus_per_node": "read only with enable_resource_pool (refused)",
    "reward_model.nnodes": "read only with enable_resource_pool (refused)",
    "reward_model.reward_loop_class_name": "read only with reward_loop_module_path (refused)",
    "reward_model.sandbox_fusion.*": "read only with sandbox_fusion.url (refused)",
    "reward_model.rollout.skip_tokenizer_init": "the generative reward model's server tokenizes requests itself",
    "reward_manager.module.*": "read only with reward_manager.source=importlib (refused)",
    "algorithm.pf_ppo.*": "read only with use_pf_ppo (refused)",
    "trainer.ray_wait_register_center_timeout": "worker groups start without verl's register center",
    "*.profiler.tool_config.nsys.*": "read only with the nsys tool (refused)",
    "*.profiler.tool_config.npu.*": "read only with the npu tool (refused)",
    "global_profiler.global_tool_config.nsys.*": "read only with the nsys tool (refused)",
    "trainer.max_critic_ckpt_to_keep": "checkpoints are kept or deleted whole, by trainer.max_actor_ckpt_to_keep",
    "*.torch_memory.stack_depth": "torch's memory history records whole stacks (no depth option)",
    "actor_rollout_ref.rollout.agent.num_workers": "verl's agent-loop actors only spread requests; the loop runs in "
                                                   "each rollout worker here",
    "actor_rollout_ref.rollout.agent.custom_async_server.name": "read only with custom_async_server.path (refused)",
    "data.return_raw_input_ids": "nothing in verl reads it either; the dataset always returns raw_prompt_ids",
    "data.filter_overlong_prompts_workers": "filtering runs batched in one process, with the same result",
    "actor_rollout_ref.rollout.mode": "verl's sync (in-process engine) and async (server-based agent loop) give the "
                                      "same samples; the engines here run in the worker process either way",
    "*.megatron.sequence_parallel": "Megatron's activation sharding outside the tensor-parallel layers: memory only; "
                                    "here those activations stay replicated over the TP group, with the same results",
    "*.megatron.use_distributed_optimizer": "FSDP2 shards the optimizer state either way",
    "*.megatron.grad_offload": "gradients are freed after each optimizer step, so none are kept to offload",
    "*.megatron.dist_checkpointing_*": "read only with megatron.use_dist_checkpointing (refused)",
    "*.megatron.seed": "weights come from the checkpoint; fsdp_config.seed seeds any it lacks",
    "*.megatron.override_ddp_config": "Megatron DDP options have no counterpart; FSDP2's are fsdp_config.*",
    "*.megatron.override_transformer_config": "Megatron TransformerConfig options (recompute, fused kernels, "
                                              "attention backend) change speed and memory only; activation "
                                              "recompute here is model.enable_gradient_checkpointing",
    "*.megatron.override_transformer_config.*": "see megatron.override_transformer_config",
    "*.megatron.override_mcore_model_config": "model overrides are model.override_config here",
    "*.megatron.use_mbridge": "the HF checkpoint is read directly (no weight conversion) either way",
    "*.megatron.vanilla_mbridge": "see megatron.use_mbridge",
    "*.megatron.forward_only": "the reference never trains and the actor and critic always do",
    "*.mixed_precision.buffer_dtype": "FSDP2 has no buffer dtype: buffers keep the dtype they load in (as under "
                                      "verl's fsdp2)",
    "reward_model.launch_reward_fn_async": "the rewards are the same; here they are computed right after generation, "
                                           "before the log-prob passes, rather than overlapping them",
}


def fixed_rule(key: str) -> tuple[tuple[Any, ...], str] | None:
    """The :data:`FIXED` rule of a dotted key, if any (the first matching pattern)."""
    for pattern, rule in FIXED.items():
        if fnmatch.fnmatchcase(key, pattern):
            return rule
    return None


def same_either_way_reason(key: str) -> str | None:
    for pattern, reason in SAME_EITHER_WAY.items():
        if fnmatch.fnmatchcase(key, pattern):
            return reason
    return None


def _matches(value: Any, accepted: tuple[Any, ...]) -> bool:
    return any(value == a and type(value) is not bool or value is a for a in accepted)


#: verl's deprecated global micro-batch keys and the per-GPU key each one sets: ``(section path, global, per GPU)``.
GLOBAL_MICRO_BATCHES = (
    ("actor_rollout_ref.actor", "ppo_micro_batch_size", "ppo_micro_batch_size_per_gpu"),
    ("actor_rollout_ref.ref", "log_prob_micro_batch_size", "log_prob_micro_batch_size_per_gpu"),
    ("actor_rollout_ref.rollout", "log_prob_micro_batch_size", "log_prob_micro_batch_size_per_gpu"),
    ("critic", "ppo_micro_batch_size", "ppo_micro_batch_size_per_gpu"),
    ("critic", "forward_micro_batch_size", "forward_micro_batch_size_per_gpu"),
    ("reward_model", "micro_batch_size", "micro_batch_size_per_gpu"),
)


def _section(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def model_parallel_size(section: Any) -> int:
    """Ranks of a worker section that hold the same batch: its Ulysses degree x its tensor-parallel degree
    (``megatron.tensor_model_parallel_size``); the data-parallel size is the world divided by this."""
    megatron = getattr(section, "megatron", None)
    return getattr(section, "ulysses_sequence_parallel_size", 1) * getattr(megatron, "tensor_model_parallel_size", 1)


def _data_parallel(config: Any, path: str, ranks: int) -> int:
    """Data-parallel ranks of a section: ``ranks / (ulysses x tensor-parallel size)`` (the rollout's log-prob pass
    runs on the actor)."""
    sec = _section(config, "actor_rollout_ref.actor" if path == "actor_rollout_ref.rollout" else path)
    return max(1, ranks // model_parallel_size(sec))


def per_gpu_sizes(config: Any, ranks: int) -> dict[str, dict[str, int]]:
    """``{section path: {per-GPU key: size}}`` for each deprecated global micro-batch size that is set and whose
    per-GPU key is not: the global size divided by the data-parallel ranks, as verl does. The config is not
    modified; the trainer hands these to the workers' copies of their sections."""
    out: dict[str, dict[str, int]] = {}
    for path, global_key, per_gpu_key in GLOBAL_MICRO_BATCHES:
        sec = _section(config, path)
        value = getattr(sec, global_key)
        if value is not None and getattr(sec, per_gpu_key) is None:
            out.setdefault(path, {})[per_gpu_key] = value // _data_parallel(config, path, ranks)
    return out


def _deprecated_micro_batches(config: Any, ranks: int) -> None:
    for path, global_key, per_gpu_key in GLOBAL_MICRO_BATCHES:
        sec = _section(config, path)
        value, per_gpu = getattr(sec, global_key), getattr(sec, per_gpu_key)
        if value is None:
            continue
        if per_gpu is not None:
            raise ConfigError(f"{path}.{global_key}={value} and {path}.{per_gpu_key}={per_gpu} are both set; "
                              f"{global_key} is verl's deprecated global size: keep only {per_gpu_key}")
        if value < ranks or value % ranks:
            raise ConfigError(f"{path}.{global_key}={value} (a global micro-batch size) must be a multiple of the "
                              f"{ranks} ranks; better set {path}.{per_gpu_key}")


def _follows(config: Any) -> list[tuple[str, Any, str, Any]]:
    """Keys that are verl's copies of another key: ``(key, value, source key, source value)``."""
    arr = config.actor_rollout_ref
    n = arr.rollout.n
    return [("actor_rollout_ref.actor.rollout_n", arr.actor.rollout_n, "actor_rollout_ref.rollout.n", n),
            ("actor_rollout_ref.ref.rollout_n", arr.ref.rollout_n, "actor_rollout_ref.rollout.n", n),
            ("critic.rollout_n", config.critic.rollout_n, "actor_rollout_ref.rollout.n", n),
            ("actor_rollout_ref.actor.use_remove_padding", arr.actor.use_remove_padding,
             "actor_rollout_ref.model.use_remove_padding", arr.model.use_remove_padding),
            # the policy worker runs its actor and reference in one sequence-parallel group
            *((f"actor_rollout_ref.{key}", value, "actor_rollout_ref.actor.ulysses_sequence_parallel_size",
               arr.actor.ulysses_sequence_parallel_size)
              for key, value in (("actor.fsdp_config.ulysses_sequence_parallel_size",
                                  arr.actor.fsdp_config.ulysses_sequence_parallel_size),
                                 ("ref.ulysses_sequence_parallel_size", arr.ref.ulysses_sequence_parallel_size),
                                 ("ref.fsdp_config.ulysses_sequence_parallel_size",
                                  arr.ref.fsdp_config.ulysses_sequence_parallel_size))),
            # ... and one tensor-parallel layout
            ("actor_rollout_ref.ref.megatron.tensor_model_parallel_size", arr.ref.megatron.tensor_model_parallel_size,
             "actor_rollout_ref.actor.megatron.tensor_model_parallel_size", arr.actor.megatron.tensor_model_parallel_size)]


def check_fixed_keys(config: Any, ranks: int = 1, extra: Callable[[str, Any], None] | None = None) -> None:
    """Raise :class:`ConfigError` for the first key of ``config`` outside its :data:`FIXED` values (and for verl's
    deprecated global micro-batch sizes and copies of other keys that disagree with them)."""
    from verl.utils.profiler.config import REFUSED_TOOLS, TOOLS, TORCH_CONTENTS

    for key, value, _ in iter_fields(config):
        rule = fixed_rule(key)
        if rule is not None and not _matches(value, rule[0]):
            accepted = " or ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a)
                                   for a in rule[0])
            raise ConfigError(f"{key}={value!r} is not supported: {rule[1]} (accepted: {accepted})")
        if key.endswith("profiler.tool") and value is not None:
            if value in REFUSED_TOOLS:
                raise ConfigError(f"{key}={value}: {REFUSED_TOOLS[value]}")
            if value not in TOOLS:
                raise ConfigError(f"{key}={value!r}: use one of {list(TOOLS)} (or null)")
        if key.endswith("profiler.tool_config.torch.contents"):
            unknown = [c for c in value if c not in TORCH_CONTENTS]
            if unknown:
                raise ConfigError(f"{key} has unknown entries {unknown}; use any of {list(TORCH_CONTENTS)}")
    _deprecated_micro_batches(config, ranks)
    for key, value, source, source_value in _follows(config):
        if value != source_value:
            raise ConfigError(f"{key}={value} disagrees with {source}={source_value}: it is verl's copy of that key; "
                              f"set {source} instead (and leave {key} unset)")
