"""Config sections of the workers: ``actor_rollout_ref.*``, ``critic.*`` and ``reward_model.*``.

Key names follow verl's documented config. Batch sizes named ``*_mini_batch_size`` count prompts globally;
``*_per_gpu`` sizes count sequences on one rank and change only speed and memory, never the math. The
per-rank sizes a worker derives from them live in :class:`verl.workers.batching.BatchPlan`, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from verl.reward.config import OverlongBufferConfig
from verl.rollout.config import RolloutConfig
from verl.utils.profiler.config import ProfilerConfig
from verl.workers.config_sections import (
    AgentLoopConfig,
    CheckpointEngineConfig,
    FusedKernelOptions,
    MegatronConfig,
    MtpConfig,
    PrometheusConfig,
    RewardRolloutConfig,
    RouterReplayConfig,
    SandboxFusionConfig,
    TiledMLPConfig,
    TraceConfig,
    WrapPolicyConfig,
)

__all__ = [
    # verl's names (verl.workers.config): FSDP is this library's training engine, so verl's FSDP* sections and
    # the engine-agnostic names are the same classes as ours.
    "AgentLoopConfig",
    "CheckpointEngineConfig",
    "FSDPActorConfig",
    "FSDPCriticConfig",
    "FSDPCriticModelCfg",
    "FSDPEngineConfig",
    "FSDPOptimizerConfig",
    "MtpConfig",
    "OptimizerConfig",
    "PrometheusConfig",
    "RolloutConfig",
    "RouterReplayConfig",
    "SandboxFusionConfig",
    "TraceConfig",
    # this library's names
    "ActorConfig",
    "ActorRolloutRefConfig",
    "CheckpointConfig",
    "CriticConfig",
    "CriticModelConfig",
    "FSDPConfig",
    "HFModelConfig",
    "MixedPrecisionConfig",
    "ModelConfig",
    "OptimConfig",
    "PolicyLossConfig",
    "RefConfig",
    "RewardModelConfig",
    "RewardModelModelConfig",
    "WorkerRolloutConfig",
]


@dataclass
class MixedPrecisionConfig:
    """Dtypes of FSDP2's mixed precision (used on accelerators; CPU runs compute in fp32)."""

    param_dtype: str = "bf16"
    """Dtype parameters are cast to for forward/backward (``bf16``, ``fp16`` or ``fp32``)."""
    reduce_dtype: str = "fp32"
    """Dtype gradients are reduced in across ranks."""
    buffer_dtype: str = "fp32"
    """Dtype of buffers (e.g. rotary caches)."""


@dataclass
class FSDPConfig:
    """How a model is sharded with FSDP2 and what is offloaded to CPU between phases."""

    param_offload: bool = False
    """Move parameters to CPU while another phase (e.g. generation) uses the accelerator."""
    optimizer_offload: bool = False
    """Move optimizer state to CPU outside of ``update_*``."""
    reshard_after_forward: bool = True
    """Free gathered parameters after each layer's forward (ZeRO-3); False keeps them (ZeRO-2, faster, more memory)."""
    fsdp_size: int = -1
    """Ranks one model is sharded over; -1 = all ranks of the worker group."""
    model_dtype: str = "fp32"
    """Dtype of the master weights the optimizer updates (``fp32`` for training; ``bf16`` for reference models)."""
    mixed_precision: MixedPrecisionConfig = field(default_factory=MixedPrecisionConfig)
    """Compute and reduction dtypes on accelerators."""
    wrap_policy: WrapPolicyConfig = field(default_factory=WrapPolicyConfig)
    """Which modules are sharded as units (each decoder layer, then the root)."""
    offload_policy: bool = False
    """FSDP2's ``CPUOffloadPolicy``: parameters, gradients and the optimizer step stay on CPU during training."""
    forward_prefetch: bool = False
    """Issue the next decoder layer's all-gather before the current layer's forward runs (FSDP2 explicit
    forward prefetch); speed only."""
    use_orig_params: bool = False
    """An FSDP1 option; FSDP2 (used here, as verl's ``strategy=fsdp2``) always keeps the original parameters,
    so both values behave the same."""
    seed: int = 42
    """Seed of the weights a checkpoint does not contain (e.g. the critic's value head)."""
    full_determinism: bool = False
    """``torch.use_deterministic_algorithms(True)`` in the worker (bitwise-reproducible kernels, slower)."""
    ulysses_sequence_parallel_size: int = 1
    """Ulysses sequence parallelism of this engine (see the role's ``ulysses_sequence_parallel_size``)."""
    entropy_from_logits_with_chunking: bool = False
    """Compute entropy from logits in row chunks. This engine's log-prob/entropy kernel always works in row
    chunks, so both values behave the same."""
    use_torch_compile: bool = True
    """verl compiles its entropy-from-logits function with ``torch.compile``; this engine's training forward is
    not compiled, so both values behave the same (default: the role's ``use_torch_compile``)."""
    entropy_checkpointing: bool = False
    """Recompute the entropy in backward instead of keeping activations. This engine's kernel always recomputes
    softmax in backward, so both values behave the same."""
    forward_only: bool = False
    """The engine only runs forwards (true for the reference model, false for trained models)."""
    strategy: str = "fsdp"
    """``fsdp`` or ``fsdp2`` (both FSDP2 here)."""
    dtype: str = "bfloat16"
    """verl's engine compute dtype; here ``mixed_precision.param_dtype`` sets it (only ``bfloat16`` is accepted)."""


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = 1e-6
    """Peak learning rate."""
    lr_warmup_steps: int = -1
    """Linear warm-up steps; -1 = use ``lr_warmup_steps_ratio``."""
    lr_warmup_steps_ratio: float = 0.0
    """Warm-up as a fraction of the total training steps (when ``lr_warmup_steps`` is -1)."""
    lr_scheduler_type: str = "constant"
    """Schedule after warm-up: ``constant`` or ``cosine``."""
    warmup_style: str | None = None
    """Deprecated spelling of ``lr_scheduler_type`` (verl); when set it wins."""
    lr_decay_style: str | None = None
    """Megatron's spelling of ``lr_scheduler_type``; when set (and ``warmup_style`` is not) it wins."""
    optimizer: str = "AdamW"
    """Optimizer class name in ``optimizer_impl`` (``AdamW``, ``Adam``, ``SGD``, ...)."""
    optimizer_impl: str = "torch.optim"
    """Module the optimizer class is imported from."""
    override_optimizer_config: dict[str, Any] | None = None
    """Extra keyword arguments of the optimizer's constructor."""
    clip_grad: float = 1.0
    """Clip the global gradient norm to this value (verl's newer spelling: the section's ``grad_clip`` follows it
    unless set, and ``grad_clip`` is what the worker applies)."""
    min_lr_ratio: float = 0.0
    """Cosine schedule floor as a fraction of ``lr``."""
    num_cycles: float = 0.5
    """Cosine cycles over the run (0.5 = one half-cosine from ``lr`` down to the floor)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    total_training_steps: int = -1
    """Optimizer steps of the whole run for the schedule; -1 = derived by the trainer (the config is not rewritten)."""


@dataclass
class CheckpointConfig:
    """What a checkpoint holds."""

    save_contents: list[str] = field(default_factory=lambda: ["model", "optimizer", "extra"])
    """Parts to save: ``model``, ``optimizer``, ``extra`` (LR schedule, RNG) and ``hf_model`` (a transformers directory)."""
    load_contents: list[str] = field(default_factory=lambda: ["model", "optimizer", "extra"])
    """Parts to restore on resume."""
    async_save: bool = False
    """Save in the background (not available: checkpoints are written synchronously, then published atomically)."""


@dataclass
class HFModelConfig:
    """Where a transformers model comes from and how it is loaded (shared by the policy and the critic)."""

    path: str = ""
    """Local directory of a transformers model (config, weights, tokenizer)."""
    tokenizer_path: str | None = None
    """Tokenizer directory when it differs from ``path``."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint."""
    override_config: dict[str, Any] = field(default_factory=dict)
    """Entries that override the model's ``config.json`` (e.g. ``+actor_rollout_ref.model.override_config.attention_dropout=0``)."""
    external_lib: str | None = None
    """A module imported before loading (registers custom architectures)."""
    enable_gradient_checkpointing: bool = True
    """Recompute activations in backward to save memory."""
    use_remove_padding: bool = True
    """Pack sequences without padding for forward passes (results equal the padded computation)."""
    attn_implementation: str = "sdpa"
    """transformers attention implementation: ``sdpa``, ``eager`` or ``flash_attention_2`` when installed."""
    use_shm: bool = False
    """Copy the model to shared memory first (not available: models load from local disk)."""
    enable_activation_offload: bool = False
    """Offload activations to CPU during training (not available: use gradient checkpointing)."""
    tiled_mlp: TiledMLPConfig = field(default_factory=TiledMLPConfig)
    """Tiled MLP (not available)."""


@dataclass
class ModelConfig(HFModelConfig):
    """The policy model (also used by the reference and rollout)."""

    custom_chat_template: str | None = None
    """A Jinja chat template replacing the tokenizer's."""
    hf_config_path: str | None = None
    """A directory whose ``config.json`` replaces the model's (None = ``path``)."""
    use_liger: bool = False
    """Liger kernels (not integrated here; the log-prob kernel already avoids materialising fp32 logits)."""
    use_fused_kernels: bool = False
    """verl's fused log-prob/entropy kernels. This engine always computes log-probs and entropy with its own
    memory-lean kernel (row-chunked, recomputed in backward), so both values behave the same."""
    fused_kernel_options: FusedKernelOptions = field(default_factory=FusedKernelOptions)
    """Backend of the fused kernels (``torch`` or ``triton``; see ``use_fused_kernels``)."""
    mtp: MtpConfig = field(default_factory=MtpConfig)
    """Multi-token prediction (not available)."""
    lora_rank: int = 0
    """LoRA rank: > 0 trains peft LoRA adapters of this rank on the policy (base weights frozen, no optimizer state
    for them; the reference is the base with adapters disabled; the rollout gets merged weights); 0 = full
    fine-tuning."""
    lora_alpha: float = 16
    """LoRA alpha: the adapters' output is scaled by ``lora_alpha / lora_rank``."""
    target_modules: Any = "all-linear"
    """Linear layers LoRA adapts: ``all-linear`` (every linear layer but the LM head) or a list of module names
    (``[q_proj,v_proj]``)."""
    exclude_modules: Any = None
    """Module names LoRA leaves out of ``target_modules`` (a name or a list), or null."""
    lora_adapter_path: str | None = None
    """A saved peft LoRA adapter (a directory with ``adapter_config.json``) the actor starts from and keeps training;
    its rank, alpha and targets are used (``lora_rank`` may stay 0)."""
    lora: dict[str, Any] = field(default_factory=dict)
    """verl's nested LoRA spelling: ``lora.rank``, ``lora.alpha`` (default 32), ``lora.target_modules`` (Megatron
    layer names such as ``linear_qkv`` map to the Hugging Face ones), ``lora.exclude_modules``,
    ``lora.adapter_path``; the same settings as the flat keys above."""
    use_shm: bool = False
    """Copy the model directory to ``/dev/shm`` once and load it from there (faster repeated loading)."""


@dataclass
class PolicyLossConfig:
    """Which policy loss the actor minimises (``verl.trainer.ppo.core_algos`` registry)."""

    loss_mode: str = "vanilla"
    """Registered policy loss: ``vanilla``, ``gspo``, ``gpg``, ``clip_cov``, ``kl_cov``, ``geo_mean``, ``cispo``, ..."""
    clip_cov_ratio: float = 0.0002
    """clip_cov: fraction of tokens whose gradient is clipped."""
    clip_cov_lb: float = 1.0
    """clip_cov: lower bound of the covariance window."""
    clip_cov_ub: float = 5.0
    """clip_cov: upper bound of the covariance window."""
    kl_cov_ratio: float = 0.0002
    """kl_cov: fraction of tokens that get the KL penalty."""
    ppo_kl_coef: float = 0.1
    """kl_cov: coefficient of that penalty."""


@dataclass
class ActorConfig:
    """The policy's PPO update."""

    strategy: str = "fsdp2"
    """Training backend: ``fsdp2`` (``fsdp`` is accepted as the same)."""
    ppo_mini_batch_size: int = 256
    """Prompts per optimizer step, globally (each contributes ``rollout.n`` responses)."""
    ppo_micro_batch_size_per_gpu: int | None = None
    """Sequences per forward/backward on one rank (gradient accumulation); speed and memory only."""
    use_dynamic_bsz: bool = False
    """Pack micro-batches by a token budget (``ppo_max_token_len_per_gpu``) instead of a fixed count."""
    ppo_max_token_len_per_gpu: int = 16384
    """Token budget of one micro-batch on one rank with ``use_dynamic_bsz``."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value."""
    clip_ratio: float = 0.2
    """PPO clip range epsilon (used for both sides unless ``clip_ratio_low/high`` are set)."""
    clip_ratio_low: float | None = None
    """Lower clip range (DAPO clip-higher); None = ``clip_ratio``."""
    clip_ratio_high: float | None = None
    """Upper clip range (DAPO clip-higher); None = ``clip_ratio``."""
    clip_ratio_c: float = 3.0
    """Dual-clip constant for negative advantages (Ye et al. 2020)."""
    loss_agg_mode: str = "token-mean"
    """``token-mean``, ``seq-mean-token-sum``, ``seq-mean-token-mean`` or ``seq-mean-token-sum-norm``."""
    entropy_coeff: float = 0.0
    """Entropy bonus coefficient (loss -= coeff x entropy)."""
    entropy_metric_interval: int = 1
    """Report the ``actor/entropy`` metric every this many steps (0 = never). It costs one more pass over the
    vocabulary; the loss computes entropy whenever ``entropy_coeff`` is non-zero regardless."""
    use_kl_loss: bool = False
    """Add ``kl_loss_coef`` x KL(actor || ref) to the loss (GRPO style) instead of a KL reward penalty."""
    kl_loss_coef: float = 0.001
    """Coefficient of the KL loss."""
    kl_loss_type: str = "low_var_kl"
    """KL estimator: ``kl``/``k1``, ``abs``, ``mse``/``k2``, ``low_var_kl``/``k3``, and ``+`` straight-through variants."""
    ppo_epochs: int = 1
    """Passes over the batch per training step."""
    shuffle: bool = False
    """Shuffle trajectories before splitting into mini-batches."""
    tis_imp_ratio_cap: float = -1.0
    """Truncated importance sampling cap for rollout/trainer log-prob mismatch; -1 = off (needs calculate_log_probs)."""
    use_torch_compile: bool = True
    """verl compiles its entropy-from-logits function; this engine's training forward is not compiled, so both
    values behave the same (the native rollout's decode-step compile is ``rollout.enforce_eager``)."""
    rollout_n: int = 1
    """verl's copy of ``rollout.n`` (follows it; another value is refused)."""
    ppo_micro_batch_size: int | None = None
    """verl's deprecated global micro-batch size: when set (and the ``_per_gpu`` key is not), the workers use it
    divided by the data-parallel ranks."""
    tau_pos: float = 1.0
    """SAPO loss temperature for positive advantages (read only by ``policy_loss.loss_mode=sapo``)."""
    tau_neg: float = 1.05
    """SAPO loss temperature for negative advantages (read only by ``policy_loss.loss_mode=sapo``)."""
    freeze_vision_tower: bool = False
    """Freeze a vision-language model's vision tower (vision-language models are not supported)."""
    loss_scale_factor: float | None = None
    """The constant divisor of ``loss_agg_mode=seq-mean-token-sum-norm`` (None = the response length)."""
    calculate_entropy: bool = False
    """Compute the entropy (``actor/entropy``) every step even when ``entropy_metric_interval`` would skip it."""
    use_prefix_grouper: bool = False
    """Share the prompt's forward across its ``n`` responses in training (not available)."""
    data_loader_seed: int = 42
    """Seed of the mini-batch shuffling (``shuffle=true``)."""
    use_fused_kernels: bool = False
    """Follows ``model.use_fused_kernels``."""
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)
    """Profiling of this role (``global_profiler`` chooses the tool and steps)."""
    router_replay: RouterReplayConfig = field(default_factory=RouterReplayConfig)
    """MoE router replay (not available)."""
    ulysses_sequence_parallel_size: int = 1
    """Ulysses sequence-parallel degree: each packed micro-batch is split along the sequence over this many ranks
    (attention heads and key/value heads must divide by it; needs ``model.use_remove_padding``); the data-parallel
    size is ``world / ulysses_sequence_parallel_size``. The reference follows it."""
    entropy_from_logits_with_chunking: bool = False
    """See ``fsdp_config.entropy_from_logits_with_chunking`` (always chunked here)."""
    entropy_checkpointing: bool = False
    """See ``fsdp_config.entropy_checkpointing`` (always recomputed in backward here)."""
    use_remove_padding: bool = True
    """Follows ``model.use_remove_padding`` (set that key; a different value here is refused)."""
    calculate_sum_pi_squared: bool = False
    """The sum of squared token probabilities for the optimal-baseline estimator (not available)."""
    sum_pi_squared_checkpointing: bool = False
    """Recompute it in backward (with ``calculate_sum_pi_squared``)."""
    policy_loss: PolicyLossConfig = field(default_factory=PolicyLossConfig)
    """Policy loss choice and its parameters."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    fsdp_config: FSDPConfig = field(default_factory=FSDPConfig)
    """Sharding and offload."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint contents."""
    megatron: MegatronConfig = field(default_factory=MegatronConfig)
    """verl's Megatron keys: ``tensor_model_parallel_size`` runs tensor parallelism x FSDP2 here (torch-native,
    not Megatron-LM); see :class:`~verl.workers.config_sections.MegatronConfig`."""


@dataclass
class RefConfig:
    """The frozen reference policy (for KL)."""

    log_prob_micro_batch_size_per_gpu: int | None = None
    """Sequences per forward on one rank when computing reference log-probs."""
    log_prob_use_dynamic_bsz: bool = False
    """Pack those forwards by ``log_prob_max_token_len_per_gpu`` tokens instead."""
    log_prob_max_token_len_per_gpu: int = 16384
    """Token budget of one forward with dynamic batch size."""
    fsdp_config: FSDPConfig = field(default_factory=lambda: FSDPConfig(param_offload=False, forward_only=True))
    """Sharding and offload of the reference model."""
    rollout_n: int = 1
    """verl's copy of ``rollout.n`` (follows it)."""
    strategy: str = "fsdp"
    """Backend (follows ``actor.strategy``)."""
    use_torch_compile: bool = True
    """Follows ``actor.use_torch_compile`` (same meaning)."""
    log_prob_micro_batch_size: int | None = None
    """verl's deprecated global micro-batch size: when set (and the ``_per_gpu`` key is not), the workers use it
    divided by the data-parallel ranks."""
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)
    """Profiling of this role."""
    router_replay: RouterReplayConfig = field(default_factory=RouterReplayConfig)
    """MoE router replay (not available)."""
    ulysses_sequence_parallel_size: int = 1
    """Ulysses sequence-parallel degree (follows the actor's)."""
    entropy_from_logits_with_chunking: bool = False
    """As the actor's (always chunked here)."""
    entropy_checkpointing: bool = False
    """As the actor's (always recomputed here)."""
    megatron: MegatronConfig = field(default_factory=MegatronConfig)
    """verl's Megatron keys of the reference (its ``tensor_model_parallel_size`` follows the actor's)."""


@dataclass
class WorkerRolloutConfig(RolloutConfig):
    """The rollout engine plus the micro-batching of the old-log-prob recomputation (verl keeps both here)."""

    log_prob_micro_batch_size_per_gpu: int | None = None
    """Sequences per forward on one rank when recomputing old log-probs."""
    log_prob_use_dynamic_bsz: bool = False
    """Pack those forwards by ``log_prob_max_token_len_per_gpu`` tokens instead."""
    log_prob_max_token_len_per_gpu: int = 16384
    """Token budget of one forward with dynamic batch size."""
    tensor_model_parallel_size: int = 1
    """Ranks one rollout replica spans (native or vllm engine): attention heads, MLP columns and the KV cache are
    split over each group of this many consecutive ranks; the rollout data-parallel size is world / this."""
    log_prob_micro_batch_size: int | None = None
    """verl's deprecated global micro-batch size: when set (and the ``_per_gpu`` key is not), the workers use it
    divided by the data-parallel ranks."""
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)
    """Profiling of generation (follows the actor's profiler: they share the process)."""
    cudagraph_capture_sizes: list[int] | None = None
    """vLLM: decode batch sizes captured in CUDA graphs (passed to vLLM's compilation config); None = vLLM's
    choice. The native engine captures up to ``cuda_graph_max_batch_size``."""
    data_parallel_size: int = 1
    """Data-parallel replicas inside one rollout server (servers are not used here: one replica per rank)."""
    expert_parallel_size: int = 1
    """Expert parallelism of the rollout engine (MoE; not available)."""
    pipeline_model_parallel_size: int = 1
    """Pipeline parallelism of the rollout engine (not available)."""
    logprobs_mode: str = "processed_logprobs"
    """What ``rollout_log_probs`` hold: ``processed_logprobs`` (log-softmax of the temperature-scaled logits, as
    the trainer computes them); raw modes are not available."""
    scheduling_policy: str = "fcfs"
    """Request scheduling of the engine (first come, first served)."""
    over_sample_rate: float = 0
    """Abort the slowest fraction of requests of a batch (not available: 0)."""
    multi_stage_wake_up: bool = False
    """Wake a sleeping engine weights-first, then the KV cache (vLLM memory option; not available)."""
    checkpoint_engine: CheckpointEngineConfig = field(default_factory=CheckpointEngineConfig)
    """How weights reach the engine."""
    agent: AgentLoopConfig = field(default_factory=AgentLoopConfig)
    """verl's agent-loop settings (each sample's ``agent_name`` picks its loop here)."""
    trace: TraceConfig = field(default_factory=TraceConfig)
    """Rollout tracing (not available)."""
    skip_rollout: bool = False
    """Replay dumped rollouts instead of generating (not available)."""
    skip_dump_dir: str = "/tmp/rollout_dump"
    """Dump folder of ``skip_rollout``."""
    skip_tokenizer_init: bool = True
    """Start the engine without a tokenizer (token ids in and out). The engines here always exchange token ids;
    vLLM's tokenizer is loaded for its stop tokens, so both values behave the same."""
    enable_rollout_routing_replay: bool = False
    """Record MoE routing in the rollout for router replay (not available)."""
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    """Rollout-server metrics (not available)."""
    quantization: str | None = None
    """Quantised rollout weights (e.g. ``fp8``; not available)."""
    quantization_config_file: str | None = None
    """Quantisation config (with ``quantization``)."""
    mtp: MtpConfig = field(default_factory=MtpConfig)
    """Speculative decoding with MTP heads (follows ``model.mtp``; not available)."""
    layered_summon: bool = False
    """verl: gather a LoRA actor's shards for the rollout layer by layer. The weight sync here always gathers one
    tensor at a time (less memory than one layer), so both values behave the same: that finer gather."""


@dataclass
class ActorRolloutRefConfig:
    """``actor_rollout_ref``: the policy model, its trainer, its rollout engine and the reference."""

    hybrid_engine: bool = True
    """Actor and rollout in one process sharing weights (the only mode)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""
    actor: ActorConfig = field(default_factory=ActorConfig)
    """The PPO update."""
    ref: RefConfig = field(default_factory=RefConfig)
    """The reference policy."""
    rollout: WorkerRolloutConfig = field(default_factory=WorkerRolloutConfig)
    """Generation."""
    nccl_timeout: int = 600
    """Seconds a collective (and the process group's creation) may wait before failing (the workers'
    ``torch.distributed`` timeout; gloo on CPU, nccl on GPUs)."""


@dataclass
class CriticModelConfig(HFModelConfig):
    """The value model: a causal-LM body with a one-output head."""

    path: str = ""
    """Local model directory; empty = the actor's ``model.path``."""
    fsdp_config: FSDPConfig = field(default_factory=FSDPConfig)
    """Sharding and offload of the critic."""
    lora_rank: int = 0
    """LoRA on the critic: not available (only 0); the policy's LoRA is ``actor_rollout_ref.model.lora_rank``."""
    lora_alpha: float = 16
    """LoRA alpha of the critic (unused: critic LoRA is not available)."""
    target_modules: Any = "all-linear"
    """LoRA targets of the critic (unused: critic LoRA is not available)."""


@dataclass
class CriticConfig:
    """``critic``: the value function of PPO with GAE (enabled automatically for ``adv_estimator=gae``)."""

    enable: bool | None = None
    """Force the critic on or off; None = on exactly when the advantage estimator needs values."""
    strategy: str = "fsdp2"
    """Training backend: ``fsdp2`` (``fsdp`` is accepted as the same)."""
    model: CriticModelConfig = field(default_factory=CriticModelConfig)
    """The value model."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))
    """Optimizer and schedule."""
    ppo_mini_batch_size: int = 256
    """Prompts per optimizer step, globally."""
    ppo_micro_batch_size_per_gpu: int | None = None
    """Sequences per forward/backward on one rank."""
    forward_micro_batch_size_per_gpu: int | None = None
    """Sequences per forward on one rank in ``compute_values``; None = ``ppo_micro_batch_size_per_gpu``."""
    use_dynamic_bsz: bool = False
    """Pack micro-batches by a token budget instead of a fixed count."""
    ppo_max_token_len_per_gpu: int = 32768
    """Token budget of one training micro-batch with dynamic batch size."""
    forward_max_token_len_per_gpu: int = 32768
    """Token budget of one forward in ``compute_values`` with dynamic batch size."""
    ppo_epochs: int = 1
    """Passes over the batch per training step."""
    shuffle: bool = False
    """Shuffle before splitting into mini-batches."""
    grad_clip: float = 1.0
    """Clip the global gradient norm."""
    cliprange_value: float = 0.5
    """Value clipping range (PPO's clipped value loss)."""
    loss_agg_mode: str = "token-mean"
    """How the value loss is aggregated."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint contents."""
    rollout_n: int = 1
    """verl's copy of ``rollout.n`` (follows it)."""
    ppo_micro_batch_size: int | None = None
    """verl's deprecated global micro-batch size: when set (and the ``_per_gpu`` key is not), the workers use it
    divided by the data-parallel ranks."""
    forward_micro_batch_size: int | None = None
    """verl's deprecated global forward micro-batch size: when set (and the ``_per_gpu`` key is not), the
    workers use it divided by the data-parallel ranks."""
    data_loader_seed: int = 42
    """Seed of the mini-batch shuffling (``shuffle=true``)."""
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)
    """Profiling of this role."""
    ulysses_sequence_parallel_size: int = 1
    """Ulysses sequence-parallel degree of the critic (as the actor's; needs ``critic.model.use_remove_padding``)."""
    megatron: MegatronConfig = field(default_factory=MegatronConfig)
    """verl's Megatron keys of the critic (``tensor_model_parallel_size``: tensor parallelism x FSDP2 here)."""


@dataclass
class RewardModelModelConfig:
    """The reward model: a sequence scorer (a transformers token-classification model with one label)."""

    path: str = ""
    """Local model directory."""
    input_tokenizer: str | None = None
    """The policy's tokenizer directory when the reward model's tokenizer differs (responses are re-templated)."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint."""
    external_lib: str | None = None
    """A module imported before loading."""
    use_remove_padding: bool = False
    """Pack sequences without padding for forward passes."""
    attn_implementation: str = "sdpa"
    """transformers attention implementation."""
    fsdp_config: FSDPConfig = field(default_factory=lambda: FSDPConfig(param_offload=False, forward_only=True))
    """Sharding of the reward model."""
    override_config: dict[str, Any] = field(default_factory=dict)
    """Entries that override the reward model's ``config.json``."""
    use_shm: bool = False
    """Copy the model to shared memory first (not available)."""
    use_fused_kernels: bool = False
    """Follows ``actor_rollout_ref.model.use_fused_kernels`` (no effect on a scoring model)."""


@dataclass
class RewardModelConfig:
    """``reward_model``: a learned reward model and/or the rule-based reward manager."""

    enable: bool = False
    """Score responses with a reward model (added to the rule/function reward when both are set)."""
    strategy: str = "fsdp2"
    """Backend of the reward-model worker."""
    model: RewardModelModelConfig = field(default_factory=RewardModelModelConfig)
    """The reward model."""
    micro_batch_size_per_gpu: int | None = None
    """Sequences per forward on one rank."""
    max_length: int | None = None
    """Longest re-templated input for the reward model; None = no limit."""
    use_dynamic_bsz: bool = False
    """Pack forwards by ``forward_max_token_len_per_gpu`` tokens."""
    forward_max_token_len_per_gpu: int = 32768
    """Token budget of one forward with dynamic batch size."""
    reward_manager: str = "naive"
    """Reward manager that calls the reward function: ``naive``, ``batch``, ``prime`` or ``dapo``."""
    launch_reward_fn_async: bool = False
    """Compute the function reward in the background while log-probs are computed."""
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the reward manager's constructor (e.g. ``timeout_s`` for ``prime``)."""
    overlong_buffer: OverlongBufferConfig = field(default_factory=OverlongBufferConfig)
    """DAPO's soft overlong punishment, applied by the ``dapo`` reward manager."""
    micro_batch_size: int | None = None
    """verl's deprecated global micro-batch size: when set (and the ``_per_gpu`` key is not), the workers use it
    divided by the data-parallel ranks."""
    enable_resource_pool: bool = False
    """Give the reward model its own resource pool (``n_gpus_per_node`` x ``nnodes``); here placement is
    ``trainer.placement`` (only false)."""
    n_gpus_per_node: int = 8
    """Devices per node of that pool (read only with ``enable_resource_pool``)."""
    nnodes: int = 0
    """Nodes of that pool (read only with ``enable_resource_pool``)."""
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)
    """Profiling of this role."""
    ulysses_sequence_parallel_size: int = 1
    """Ulysses sequence-parallel degree."""
    use_reward_loop: bool = True
    """verl's reward loop: rewards scored by ``num_workers`` worker processes, and a generative reward model
    (``enable`` + ``custom_reward_function.path`` + ``rollout.name``) served to the reward function by a rollout
    engine. ``false``: the reward manager scores in the driver and ``rollout.*`` is not used."""
    num_workers: int = 1
    """Reward-loop worker processes: with ``use_reward_loop`` each scoring round splits the batch over this many
    processes, each running the reward manager on its part (same rewards, scored in parallel); 1 = in the driver."""
    reward_loop_source: str = "register"
    """Where the reward loop's manager comes from: ``register`` (by ``reward_manager`` name)."""
    reward_loop_module_path: str | None = None
    """A file defining a custom reward-loop manager (with ``reward_loop_source=importlib``; not available)."""
    reward_loop_class_name: str | None = None
    """Its class name."""
    sandbox_fusion: SandboxFusionConfig = field(default_factory=SandboxFusionConfig)
    """A remote SandboxFusion service for code rewards (not available: code runs in the local sandbox)."""
    rollout: RewardRolloutConfig = field(default_factory=RewardRolloutConfig)
    """The engine serving a generative reward model (with ``use_reward_loop``, ``enable`` and a reward function);
    a discriminative model (no reward function) is scored by the reward-model worker whatever the engine."""


# verl's names for the same sections (see __all__).
FSDPActorConfig = ActorConfig
FSDPCriticConfig = CriticConfig
FSDPCriticModelCfg = CriticModelConfig
FSDPEngineConfig = FSDPConfig
OptimizerConfig = FSDPOptimizerConfig = OptimConfig
