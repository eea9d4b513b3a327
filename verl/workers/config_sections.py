"""Small config sections of verl's worker config for features that are off by default (MoE router replay,
tiled MLP, multi-token prediction, fused kernels, FSDP wrap policy, rollout checkpoint engine / tracing /
Prometheus / agent loop, the reward model's rollout engine and remote sandbox). Each key is known so verl
command lines parse; which values work is decided in one place, :mod:`verl.trainer.config.compat`, which
refuses the others before anything starts, naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AgentLoopConfig", "CheckpointEngineConfig", "CustomAsyncServerConfig", "FusedKernelOptions", "MegatronConfig",
           "MtpConfig",
           "PrometheusConfig", "RewardRolloutConfig", "RouterReplayConfig", "SandboxFusionConfig", "TiledMLPConfig",
           "TraceConfig", "WrapPolicyConfig"]


@dataclass
class WrapPolicyConfig:
    """Which modules FSDP shards as units."""

    min_num_params: int = 0
    """verl: wrap any module with at least this many parameters; 0 = wrap each decoder layer (what FSDP2 does here)."""


@dataclass
class RouterReplayConfig:
    """MoE router replay (record/replay expert routing between rollout and training)."""

    mode: str = "disabled"
    """``disabled``; ``R2``/``R3`` (replay) need MoE routing hooks this library does not have."""
    record_file: str | None = None
    """Where routing decisions are recorded (with a replay mode)."""
    replay_file: str | None = None
    """Routing decisions to replay (with a replay mode)."""


@dataclass
class TiledMLPConfig:
    """Tiled MLP forward (memory saving for very long sequences)."""

    enabled: bool = False
    """Split the MLP's sequence dimension into ``num_shards`` tiles."""
    num_shards: int = 4
    """Tiles per sequence."""


@dataclass
class FusedKernelOptions:
    """verl's fused log-prob/entropy kernels."""

    impl_backend: str = "torch"
    """``torch`` or ``triton``."""


@dataclass
class MtpConfig:
    """Multi-token prediction heads (training and speculative rollout)."""

    enable: bool = False
    """Load the model's MTP layers."""
    enable_train: bool = False
    """Train the MTP layers."""
    enable_rollout: bool = False
    """Use them for speculative decoding."""
    detach_encoder: bool = False
    """Detach the main model's hidden states fed to MTP."""
    mtp_loss_scaling_factor: float = 0.1
    """Weight of the MTP loss."""
    speculative_algorithm: str = "EAGLE"
    """Speculative-decoding algorithm of the rollout engine."""
    speculative_num_steps: int = 2
    """Draft steps."""
    speculative_eagle_topk: int = 2
    """EAGLE top-k."""
    speculative_num_draft_tokens: int = 4
    """Draft tokens."""
    method: str = "mtp"
    """Draft method."""
    num_speculative_tokens: int = 1
    """Speculative tokens per step."""


@dataclass
class CheckpointEngineConfig:
    """How the trainer's weights reach the rollout engine."""

    backend: str = "naive"
    """``naive``: in the same process, tensor by tensor (the only transport here, see ``docs/workers/rollout.md``)."""
    update_weights_bucket_megabytes: int = 2048
    """verl: size of the buckets weights are sent in. Here weights move in process, without buckets."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Options of other backends."""


@dataclass
class CustomAsyncServerConfig:
    """A user's rollout server class (verl's server-based rollout)."""

    path: str | None = None
    """File defining the class (not available: only null)."""
    name: str | None = None
    """Class name."""


@dataclass
class AgentLoopConfig:
    """verl's agent-loop settings (``rollout.agent``). Here each sample's ``agent_name`` column picks its loop
    (``tool_agent`` for multi-turn with tools, otherwise one turn); see ``rollout.multi_turn``."""

    num_workers: int = 8
    """verl's agent-loop worker actors, which only spread requests; here the loop runs in each rollout worker."""
    default_agent_loop: str = "single_turn_agent"
    """The loop of samples without an ``agent_name`` column (only ``single_turn_agent``)."""
    agent_loop_config_path: str | None = None
    """A YAML registering custom agent loops (not available: only null)."""
    custom_async_server: CustomAsyncServerConfig = field(default_factory=CustomAsyncServerConfig)
    """A custom rollout server (not available)."""


@dataclass
class TraceConfig:
    """Rollout tracing (weave / mlflow spans of agent loops)."""

    backend: str | None = None
    """None; ``weave``/``mlflow`` tracing of rollouts is not available here."""
    token2text: bool = False
    """Decode token ids in traces."""
    max_samples_per_step_per_worker: int | None = None
    """Traces kept per step and worker."""


@dataclass
class PrometheusConfig:
    """Prometheus metrics of a server-based rollout."""

    enable: bool = False
    """Export rollout-server metrics (the engines here run in the worker process, without a server)."""
    port: int = 9090
    """Prometheus port."""
    file: str = "/tmp/ray/session_latest/metrics/prometheus/prometheus.yml"
    """Prometheus config file."""
    served_model_name: str | None = None
    """Model name in the metrics."""


@dataclass
class SandboxFusionConfig:
    """verl's remote code sandbox (``reward_model.sandbox_fusion``)."""

    url: str | None = None
    """Service URL; None = code rewards run in this library's local sandbox."""
    max_concurrent: int = 64
    """Concurrent requests to the service."""
    memory_limit_mb: int = 1024
    """Memory limit per execution."""


@dataclass
class RewardRolloutConfig:
    """The rollout engine of a generative reward model (``reward_model.rollout``, verl's reward loop): it runs in
    the driver process behind an OpenAI-compatible endpoint (``verl.reward.loop``) that the reward function calls
    through ``reward_router_address``. Read only for a generative reward model (``reward_model.enable``,
    ``use_reward_loop`` and ``custom_reward_function.path``); a discriminative one is scored by the reward-model
    worker (the classifier's output at the last token, the score verl's engines return for it)."""

    name: str | None = None
    """Engine: ``native``, ``vllm`` or ``hf``; unset (verl's ``???``) = no generative reward model."""
    dtype: str = "bfloat16"
    """Engine dtype."""
    gpu_memory_utilization: float = 0.5
    """Memory fraction of the engine (vLLM)."""
    enforce_eager: bool = True
    """No CUDA graphs."""
    cudagraph_capture_sizes: list[int] | None = None
    """Captured batch sizes (only null: use ``engine_kwargs.vllm.compilation_config``)."""
    free_cache_engine: bool = True
    """Free the engine's KV cache after each scoring round."""
    data_parallel_size: int = 1
    """Data-parallel replicas (only 1: one engine in the driver process)."""
    expert_parallel_size: int = 1
    """Expert parallelism (only 1)."""
    tensor_model_parallel_size: int = 1
    """Tensor parallelism (verl's default 2; only 1 here: one engine in the driver process)."""
    max_num_batched_tokens: int = 8192
    """Tokens per forward (vLLM)."""
    max_model_len: int | None = None
    """Longest sequence; None = ``prompt_length + response_length``."""
    max_num_seqs: int = 1024
    """Requests generated together."""
    load_format: str = "auto"
    """Weight loading (not ``dummy``: the reward model loads its checkpoint)."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Engine arguments (vLLM's, directly or under ``vllm``)."""
    limit_images: int | None = None
    """Images per prompt (only null: no vision-language reward models)."""
    enable_chunked_prefill: bool = True
    """Chunked prefill (vLLM)."""
    enable_prefix_caching: bool = True
    """Prefix caching (vLLM)."""
    disable_log_stats: bool = True
    """No stats logging (vLLM)."""
    skip_tokenizer_init: bool = False
    """No tokenizer in the engine."""
    prompt_length: int = 2048
    """Longest request prompt (tokens); a longer one is answered with HTTP 400."""
    response_length: int = 2048
    """Most tokens generated per request (the default and the cap of ``max_tokens``)."""


@dataclass
class MegatronConfig:
    """verl's Megatron engine section (``actor_rollout_ref.actor.megatron``, ``ref.megatron``, ``critic.megatron``).

    This library does not run Megatron-LM. What these keys ask for that torch-native parallelism provides runs
    here: ``tensor_model_parallel_size`` splits the decoder layers over tensor-parallel groups (PyTorch DTensor,
    Megatron's column/row layout) under FSDP2 over the data-parallel ranks
    (:mod:`verl.workers.parallel.tensor_parallel`), and the offload keys offload as ``fsdp_config``'s do. Pipeline,
    expert and context parallelism are refused before anything starts (:mod:`verl.trainer.config.compat`).
    """

    tensor_model_parallel_size: int = 1
    """Tensor-parallel degree of training: attention heads, key/value heads and MLP columns split over this many
    consecutive ranks (heads and key/value heads must divide by it); data-parallel size = world / it."""
    pipeline_model_parallel_size: int = 1
    """Pipeline stages (not available: only 1)."""
    virtual_pipeline_model_parallel_size: int | None = None
    """Interleaved pipeline stages (not available: only null)."""
    expert_model_parallel_size: int = 1
    """Expert parallelism of MoE layers (not available: only 1)."""
    expert_tensor_parallel_size: int | None = None
    """Tensor parallelism inside experts (not available: only null, or 1)."""
    context_parallel_size: int = 1
    """Megatron's context parallelism (not available: only 1; Ulysses is ``ulysses_sequence_parallel_size``)."""
    sequence_parallel: bool = True
    """Megatron's sequence parallelism shards the norm/dropout activations outside the tensor-parallel layers over
    the TP group; here they stay replicated (more activation memory, same results), so both values behave alike."""
    use_distributed_optimizer: bool = True
    """Megatron's ZeRO-1 optimizer sharding; FSDP2 here always shards optimizer state, so both values behave alike."""
    param_offload: bool = False
    """Offload parameters between phases: the same as ``fsdp_config.param_offload`` (either one turns it on)."""
    grad_offload: bool = False
    """Gradients are freed after each optimizer step here, so there is nothing to offload: both values behave
    alike."""
    optimizer_offload: bool = False
    """Offload optimizer state between updates: the same as ``fsdp_config.optimizer_offload`` (either one)."""
    use_dist_checkpointing: bool = False
    """Megatron's distributed checkpoint format (not available: checkpoints are torch.distributed.checkpoint)."""
    dist_checkpointing_path: str | None = None
    """Read only with ``use_dist_checkpointing``."""
    dist_checkpointing_prefix: str = ""
    """Read only with ``use_dist_checkpointing``."""
    seed: int = 42
    """Megatron's initialisation seed; weights come from the checkpoint here and ``fsdp_config.seed`` seeds any it
    lacks, so this one changes nothing."""
    override_ddp_config: dict[str, Any] = field(default_factory=dict)
    """Megatron DDP overrides (no counterpart; FSDP2 options are ``fsdp_config.*``)."""
    override_transformer_config: dict[str, Any] = field(default_factory=dict)
    """Megatron TransformerConfig overrides (recompute, attention backend; no counterpart: activation recompute is
    ``model.enable_gradient_checkpointing``)."""
    override_mcore_model_config: dict[str, Any] = field(default_factory=dict)
    """Megatron model-config overrides (no counterpart; model overrides are ``model.override_config``)."""
    use_mbridge: bool = False
    """Convert HF weights with mbridge; the model is read from the HF checkpoint directly here either way."""
    vanilla_mbridge: bool = True
    """As ``use_mbridge``."""
    forward_only: bool = False
    """The engine only runs forwards; the reference never trains and the actor/critic always do, either way."""
    dtype: str = "bfloat16"
    """verl's engine compute dtype; here ``fsdp_config.mixed_precision.param_dtype`` sets it (only ``bfloat16``)."""
