"""The ``native`` rollout backend: this library's own engine for Llama-family models, in plain PyTorch."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch

from verl.models.config import DecoderConfig
from verl.rollout.base import BaseRollout, Generated, GenerationRequest, Prompts, special_tokens
from verl.rollout.config import RolloutConfig
from verl.rollout.native.generation import GenerationRun, RunOptions
from verl.rollout.native.kv_cache import plan_num_slots, round_up
from verl.rollout.native.tensor_parallel import build_decoder, build_runner
from verl.utils.device import empty_cache, get_device
from verl.workers.parallel.groups import RankGroup

__all__ = ["NativeRollout"]

logger = logging.getLogger(__name__)


class NativeRollout(BaseRollout):
    """Continuous-batching generation over a static KV cache, sampling on the device, CUDA graphs on GPU.

    Args:
        config: the rollout config section.
        hf_config: the model's transformers config (``model_type`` llama / qwen2 / qwen3 / mistral).
        weights: ``(hf_name, tensor)`` pairs, e.g. ``model.state_dict().items()``; plain tensors whose dtype and
            device already match the engine's are shared, not copied.
        tokenizer: optional; its ``eos_token_id`` / ``pad_token_id`` are the defaults of every call.
        generation_config: optional transformers ``GenerationConfig`` (EOS ids when there is no tokenizer).
        device: where to run; the device helper's choice by default.
        tensor_parallel: this rank's tensor-parallel group (``rollout.tensor_model_parallel_size`` > 1): the
            engine then holds this rank's heads / MLP columns and their KV cache only, and every rank of the
            group must make the same calls with the same prompts (see :mod:`.tensor_parallel`).
    """

    def __init__(
        self,
        config: RolloutConfig,
        hf_config: Any,
        weights: Iterable[tuple[str, torch.Tensor]],
        tokenizer: Any = None,
        generation_config: Any = None,
        device: torch.device | str | None = None,
        tensor_parallel: RankGroup | None = None,
    ):
        self.config = config.validate()
        self.device = torch.device(device) if device is not None else get_device()
        self.dtype: torch.dtype = getattr(torch, config.dtype)
        self.decoder = build_decoder(DecoderConfig.from_hf(hf_config), self.device, self.dtype, tensor_parallel)
        with torch.no_grad():
            self.decoder.load_weights(weights, share=True)
        self.decoder.check_complete()
        self.default_eos, self.default_pad = special_tokens(tokenizer, generation_config, hf_config)
        self.runner = build_runner(
            self.decoder,
            use_cuda_graphs=not config.enforce_eager,
            use_compile=not config.enforce_eager,
            graph_max_batch=config.cuda_graph_max_batch_size,
        )
        self._calls = 0
        self._weights_offloaded = False

    # ------------------------------------------------------------------ generation

    def _generate(self, prompts: Prompts, request: GenerationRequest) -> Generated:
        if self._weights_offloaded:
            self.wake_up()
        self._prepare_cache(prompts, request)
        generator = torch.Generator(self.device).manual_seed(
            request.seed if request.seed is not None else self.config.seed + self._calls)
        self._calls += 1
        options = RunOptions(
            max_batched_tokens=self.config.max_num_batched_tokens,
            share_prefix=self.config.enable_prefix_sharing,
            check_interval=self.config.finished_check_interval,
            show_progress=prompts.input_ids.shape[0] * request.response_length >= 1 << 16,
        )
        with torch.inference_mode():
            return GenerationRun(self.runner, prompts, request, options, generator).run()

    def _prepare_cache(self, prompts: Prompts, request: GenerationRequest) -> None:
        """Allocate (or reuse) a KV cache with enough positions for this call and slots for its batch."""
        cfg = self.config
        needed = int(prompts.lengths.max()) + request.response_length
        if cfg.max_model_len is not None and needed > cfg.max_model_len:
            raise ValueError(
                f"a prompt of {int(prompts.lengths.max())} tokens plus response_length={request.response_length} "
                f"needs {needed} positions but actor_rollout_ref.rollout.max_model_len={cfg.max_model_len}; "
                "raise max_model_len or shorten prompts/responses"
            )
        max_len = round_up(cfg.max_model_len or max(needed, cfg.prompt_length + cfg.response_length), 16)
        wanted = min(cfg.max_num_seqs, prompts.input_ids.shape[0])
        cache = self.runner.cache
        if cache is not None and cache.num_slots >= wanted and cache.max_len >= max_len:
            return
        self.runner.release_cache()
        empty_cache()
        slots = plan_num_slots(self.decoder.config, max_len, self.dtype, wanted, self.device,
                               cfg.gpu_memory_utilization)
        self.runner.ensure_cache(slots, max_len)

    # ------------------------------------------------------------------ hybrid-engine hooks

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new weights by HF name (see :meth:`LlamaDecoder.load_weights`); unknown names raise."""
        with torch.no_grad():
            self.decoder.load_weights(named_tensors, share=True)

    def sleep(self, level: int = 1) -> None:
        """Level 1: free the KV cache and the captured graphs. Level 2: also move owned weights to the CPU."""
        if level not in (1, 2):
            raise ValueError(f"sleep level must be 1 (KV cache) or 2 (KV cache and weights), got {level}")
        self.runner.release_cache()
        if level == 2 and self.device.type != "cpu" and not self._weights_offloaded:
            self.decoder.move_owned("cpu")
            self._weights_offloaded = True
        empty_cache()

    def wake_up(self) -> None:
        """Bring offloaded weights back; the KV cache is allocated by the next generation."""
        if self._weights_offloaded:
            self.decoder.move_owned(self.device)
            self._weights_offloaded = False

    @property
    def num_cuda_graphs(self) -> int:
        """Decode graphs currently captured (0 on CPU or with ``enforce_eager``)."""
        return self.runner.num_graphs
