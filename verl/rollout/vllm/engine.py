"""``VLLMRollout``: vLLM's offline ``LLM`` engine in this process, fed the actor's weights in memory.

What this module adds around vLLM, and why:

- **In-process engine.** ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps vLLM's engine core in the worker process so
  the actor's tensors reach it without serialisation; inside a torch.distributed world (the FSDP worker group)
  every rank hosts one engine through vLLM's ``external_launcher`` executor (verl's integration).
- **Weights.** :meth:`VLLMRollout.update_weights` streams ``(hf_name, tensor)`` pairs into vLLM's in-place
  ``reload_weights`` (checkpoint names, vLLM fuses q/k/v and gate/up itself), then drops the prefix cache that
  was computed with the old weights. With ``load_format=dummy`` the engine starts from random weights and
  refuses to generate until it has been given real ones.
- **Seeded sampling without per-request seeds.** Every call samples from torch's default generator re-seeded
  with the call's seed (``meta_info['seed']``, else ``config.seed`` + a call counter), so the same call on the
  same weights samples the same tokens, and a resumed run samples what an uninterrupted one would. vLLM's
  per-request ``SamplingParams(seed=...)`` is not used: its CPU backend cannot honour it.
- **Log-probs.** vLLM's ``processed_logprobs``: ``log_softmax(logits / temperature)`` of the sampled token, the
  convention of the trainer and the other backends when top-k / top-p are off (verl's defaults). With top-k or
  top-p on, vLLM's values are of the filtered distribution.
- **CPU.** vLLM's CPU backend would reserve ``gpu_memory_utilization`` of host RAM for its KV cache; here it
  gets what ``max_num_seqs`` sequences of ``max_model_len`` tokens need, capped by that fraction of the
  available RAM. It also lowers and then pins torch's thread count for the whole process; the trainer's
  setting is restored. ``sleep()`` / ``wake_up()`` are no-ops there (vLLM has no sleep mode on CPU).
"""

from __future__ import annotations

import gc
import logging
import os
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from verl.models.weights import strip_wrappers
from verl.rollout.base import BaseRollout, Generated, GenerationRequest, Prompts, special_tokens
from verl.rollout.config import RolloutConfig
from verl.rollout.vllm import check_cpu_head_size, require_vllm
from verl.utils.device import get_device

__all__ = ["VLLMRollout", "cpu_kv_cache_bytes"]

logger = logging.getLogger(__name__)

_MIN_CPU_KV_BYTES = 64 << 20


def _available_ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with vLLM
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_kv_cache_bytes(config: RolloutConfig, hf_config: Any, max_model_len: int) -> int:
    """Bytes of KV cache for ``max_num_seqs`` sequences of ``max_model_len`` tokens, at most
    ``gpu_memory_utilization`` of the available RAM and at least 64 MiB."""
    layers = hf_config.num_hidden_layers
    heads = hf_config.num_attention_heads
    kv_heads = getattr(hf_config, "num_key_value_heads", None) or heads
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // heads
    itemsize = torch.empty((), dtype=getattr(torch, config.dtype)).element_size()
    per_token = 2 * layers * kv_heads * head_dim * itemsize  # K and V of every layer
    wanted = per_token * config.max_num_seqs * max_model_len
    cap = int(config.gpu_memory_utilization * _available_ram_bytes())
    return max(_MIN_CPU_KV_BYTES, min(wanted, cap))


class VLLMRollout(BaseRollout):
    """Generate with a vLLM ``LLM`` built from a local HF checkpoint directory.

    Args:
        config: the rollout config section (``name: vllm``).
        model_path: local HF checkpoint directory (config, and the weights unless ``load_format=dummy``).
        hf_config: the checkpoint's transformers config (layer / head counts size the CPU KV cache).
        tokenizer: optional; its EOS / pad ids are the defaults of every call (vLLM gets token ids only).
        generation_config: optional ``GenerationConfig`` (EOS ids when there is no tokenizer).
        device: where the engine runs; vLLM places itself on the process's accelerator (or the CPU).
        tensor_parallel_size: ranks of the surrounding torch.distributed world one engine spans.
    """

    _open: weakref.ref | None = None  # the engine currently open in this process

    def __init__(
        self,
        config: RolloutConfig,
        model_path: str,
        hf_config: Any,
        tokenizer: Any = None,
        generation_config: Any = None,
        device: torch.device | str | None = None,
        tensor_parallel_size: int = 1,
    ):
        require_vllm()
        self.device = torch.device(device) if device is not None else get_device()
        if self.device.type == "cpu":
            check_cpu_head_size(hf_config)
        if VLLMRollout._open is not None and VLLMRollout._open() is not None:
            raise RuntimeError("a vLLM engine is already open in this process (vLLM keeps process-wide parallel "
                               "state): close() it before building another")
        self.config = config.validate()
        self.default_eos, self.default_pad = special_tokens(tokenizer, generation_config, hf_config)
        self.max_model_len = config.max_model_len or config.prompt_length + config.response_length
        self.needs_weights = config.load_format == "dummy"
        self._calls = 0
        self._sleeping = False
        self._sleep_mode = self.device.type != "cpu"
        # vLLM creates (and on close() destroys) a one-rank torch.distributed world when the process has none
        self._owns_world = not (torch.distributed.is_available() and torch.distributed.is_initialized())
        self.llm: Any = self._build_engine(model_path, hf_config, tensor_parallel_size)
        VLLMRollout._open = weakref.ref(self)

    def engine_args(self, model_path: str, hf_config: Any, tensor_parallel_size: int) -> dict[str, Any]:
        """The keyword arguments of ``vllm.LLM``: verl's rollout keys with verl's meaning, then
        ``engine_kwargs.vllm`` as given."""
        cfg = self.config
        args: dict[str, Any] = dict(
            model=model_path, skip_tokenizer_init=True, dtype=cfg.dtype, seed=cfg.seed,
            max_model_len=self.max_model_len, max_num_seqs=cfg.max_num_seqs,
            max_num_batched_tokens=cfg.max_num_batched_tokens, enable_chunked_prefill=cfg.enable_chunked_prefill,
            enable_prefix_caching=cfg.enable_prefix_caching, enforce_eager=cfg.enforce_eager,
            load_format=cfg.load_format, disable_log_stats=cfg.disable_log_stats,
            tensor_parallel_size=tensor_parallel_size, logprobs_mode="processed_logprobs",
        )
        if self.device.type == "cpu":
            if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
                args["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(cfg, hf_config, self.max_model_len)
        else:
            args["gpu_memory_utilization"] = cfg.gpu_memory_utilization
            args["enable_sleep_mode"] = True
        if not self._owns_world:  # a worker group's torch.distributed world: one engine per rank
            args["distributed_executor_backend"] = "external_launcher"
        args.update(dict(cfg.engine_kwargs.get("vllm") or {}))
        return args

    def _build_engine(self, model_path: str, hf_config: Any, tensor_parallel_size: int) -> Any:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core must live in this process
        from vllm import LLM

        args = self.engine_args(model_path, hf_config, tensor_parallel_size)
        # vLLM's CPU worker sets torch to 1 thread and replaces torch.set_num_threads for the whole process;
        # the trainer shares this process, so both are put back.
        set_num_threads, num_threads = torch.set_num_threads, torch.get_num_threads()
        # vLLM's external launcher reads the rank from the environment; a world made by hand may not say it
        added = {}
        if not self._owns_world:
            rank = torch.distributed.get_rank()
            wanted = {"RANK": rank, "LOCAL_RANK": rank % max(torch.cuda.device_count(), 1),
                      "WORLD_SIZE": torch.distributed.get_world_size()}
            added = {k: str(v) for k, v in wanted.items() if k not in os.environ}
        os.environ.update(added)
        try:
            return LLM(**args)
        finally:
            for key in added:
                os.environ.pop(key, None)
            torch.set_num_threads = set_num_threads
            torch.set_num_threads(num_threads)

    # ------------------------------------------------------------------ generation

    def _sampling_params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams

        s = request.sampling
        return SamplingParams(
            n=1,
            temperature=0.0 if s.greedy else s.temperature,
            top_k=s.top_k if not s.greedy else -1,
            top_p=s.top_p if not s.greedy else 1.0,
            max_tokens=request.response_length,
            stop_token_ids=[] if request.ignore_eos else list(request.eos_token_ids),
            ignore_eos=request.ignore_eos,
            logprobs=0 if request.calculate_log_probs else None,
            detokenize=False,
        )

    def _generate(self, prompts: Prompts, request: GenerationRequest) -> Generated:
        from vllm.inputs import TokensPrompt

        if self.needs_weights:
            raise RuntimeError(
                "the vLLM engine was built with actor_rollout_ref.rollout.load_format=dummy (random weights) and "
                "has not been given real ones: call update_weights() first, or set load_format=auto")
        if self._sleeping:
            self.wake_up()
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(prompts.input_ids.cpu(), prompts.attention_mask.cpu())]
        seed = request.seed if request.seed is not None else self.config.seed + self._calls
        self._calls += 1
        devices = [self.device] if self.device.type != "cpu" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(seed)
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=r) for r in rows],
                                        self._sampling_params(request),
                                        use_tqdm=len(rows) * request.response_length >= 1 << 16)
        return self._collect(outputs, request)

    @staticmethod
    def _collect(outputs: list[Any], request: GenerationRequest) -> Generated:
        b, r = len(outputs), request.response_length
        responses = torch.full((b, r), request.pad_token_id, dtype=torch.long)
        lengths = torch.zeros(b, dtype=torch.long)
        log_probs = torch.zeros((b, r), dtype=torch.float32) if request.calculate_log_probs else None
        for i, out in enumerate(outputs):
            completion = out.outputs[0]
            tokens = list(completion.token_ids)[:r]
            lengths[i] = len(tokens)
            responses[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            if log_probs is not None:
                chosen = [step[tok].logprob for tok, step in zip(tokens, completion.logprobs)]
                log_probs[i, : len(chosen)] = torch.tensor(chosen, dtype=torch.float32)
        return Generated(responses=responses, lengths=lengths, log_probs=log_probs)

    # ------------------------------------------------------------------ hybrid-engine hooks

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load ``(hf_name, tensor)`` pairs into the engine in place (gathered DTensors included) and drop the
        prefix cache computed with the old weights."""
        if self._sleeping:
            self.wake_up()

        def stream() -> Iterator[tuple[str, torch.Tensor]]:
            for name, tensor in named_tensors:
                if hasattr(tensor, "full_tensor"):
                    tensor = tensor.full_tensor()
                yield strip_wrappers(name), tensor

        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream()})
        self.llm.reset_prefix_cache()
        self.needs_weights = False

    def sleep(self, level: int = 1) -> None:
        """On a GPU, vLLM's sleep mode: level 1 offloads the weights to host memory and frees the KV cache,
        level 2 discards the weights too (the next generation then needs :meth:`update_weights`). On CPU: no-op."""
        if level not in (1, 2):
            raise ValueError(f"sleep level must be 1 (KV cache) or 2 (KV cache and weights), got {level}")
        if not self._sleep_mode or self._sleeping:
            return
        self.llm.sleep(level=level)
        self._sleeping = True
        if level == 2:
            self.needs_weights = True

    def wake_up(self) -> None:
        if self._sleeping:
            self.llm.wake_up()
            self._sleeping = False

    def close(self) -> None:
        """Shut the engine down and release its memory and process groups, so another engine can be built in this
        process. vLLM's shutdown also ends the torch.distributed world it ran in: close at the end of a worker's
        life, not between steps."""
        if self.llm is None:
            return
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        VLLMRollout._open = None
        destroy_model_parallel()
        if self._owns_world:
            destroy_distributed_environment()
        gc.collect()
