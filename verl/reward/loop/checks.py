"""Which reward-loop settings can run, refused before anything starts otherwise (naming the key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verl.utils.config import ConfigError

if TYPE_CHECKING:
    from verl.rollout.config import RolloutConfig
    from verl.workers.config import RewardModelConfig

__all__ = ["check_reward_loop", "genrm_engine_config", "is_generative_reward_model"]

UNSET = (None, "???")
KEY = "reward_model.rollout"


def is_generative_reward_model(config: Any) -> bool:
    """verl's generative reward model: ``reward_model.enable`` with a reward function and an engine to serve the
    model (``reward_model.rollout.name``), under the reward loop."""
    rm = config.reward_model
    return bool(rm.enable and rm.use_reward_loop and config.custom_reward_function.path and rm.rollout.name not in UNSET)


def genrm_engine_config(rm: RewardModelConfig) -> RolloutConfig:
    """The engine config (:class:`verl.rollout.config.RolloutConfig`) of the generative reward model, from
    ``reward_model.rollout``; sampling settings come with each request."""
    from verl.rollout.config import RolloutConfig

    ro = rm.rollout
    engine_kwargs = dict(ro.engine_kwargs or {})
    if engine_kwargs and not set(engine_kwargs) <= {"vllm", "sglang", "trtllm"}:
        engine_kwargs = {"vllm": engine_kwargs}  # verl's reward rollout takes the engine's arguments directly
    cfg = RolloutConfig(
        name=ro.name, dtype=ro.dtype, gpu_memory_utilization=ro.gpu_memory_utilization, enforce_eager=ro.enforce_eager,
        free_cache_engine=ro.free_cache_engine, max_num_batched_tokens=ro.max_num_batched_tokens,
        max_model_len=ro.max_model_len, max_num_seqs=ro.max_num_seqs, load_format=ro.load_format,
        engine_kwargs=engine_kwargs, enable_chunked_prefill=ro.enable_chunked_prefill,
        enable_prefix_caching=ro.enable_prefix_caching, disable_log_stats=ro.disable_log_stats,
        prompt_length=ro.prompt_length, response_length=ro.response_length, do_sample=False, temperature=0.0,
        seed=0,
    )
    try:
        return cfg.validate()
    except ValueError as exc:
        raise ConfigError(str(exc).replace("actor_rollout_ref.rollout", KEY)) from None


def check_reward_loop(config: Any) -> None:
    """Raise :class:`ConfigError` for reward-loop settings that cannot run here."""
    rm: RewardModelConfig = config.reward_model
    if rm.num_workers < 1:
        raise ConfigError(f"reward_model.num_workers={rm.num_workers} must be >= 1")
    if rm.rollout.name in ("sglang", "trtllm"):
        raise ConfigError(f"{KEY}.name={rm.rollout.name!r}: that engine is not available here; use native, vllm or hf")
    if not is_generative_reward_model(config):
        return
    ro = rm.rollout
    one_process = (("tensor_model_parallel_size", ro.tensor_model_parallel_size, "tensor parallelism"),
                   ("data_parallel_size", ro.data_parallel_size, "data-parallel replicas"),
                   ("expert_parallel_size", ro.expert_parallel_size, "expert parallelism"))
    for name, value, what in one_process:
        if value != 1:
            raise ConfigError(f"{KEY}.{name}={value}: the generative reward model runs in one engine in the driver "
                              f"process, without {what}; set {KEY}.{name}=1")
    if ro.cudagraph_capture_sizes is not None:
        raise ConfigError(f"{KEY}.cudagraph_capture_sizes: set vLLM's capture sizes with "
                          f"+{KEY}.engine_kwargs.vllm.compilation_config instead")
    if ro.limit_images is not None:
        raise ConfigError(f"{KEY}.limit_images={ro.limit_images}: vision-language reward models are not supported")
    if ro.load_format == "dummy":
        raise ConfigError(f"{KEY}.load_format=dummy would serve random weights; the reward model loads its "
                          "checkpoint (use auto)")
    if ro.name == "vllm" and config.actor_rollout_ref.rollout.name == "vllm" and config.trainer.execution_mode == "local":
        raise ConfigError(f"{KEY}.name=vllm with actor_rollout_ref.rollout.name=vllm in local mode would start two "
                          "vLLM engines in one process (vLLM allows one); use reward_model.rollout.name=native or "
                          "trainer.execution_mode=ray")
    genrm_engine_config(rm)
