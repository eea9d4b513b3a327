"""Runs the decoder on the device: owns the KV cache, the per-slot decode inputs and the captured CUDA graphs.

The decode step reads its inputs from three persistent ``(S,)`` buffers (token, RoPE position, cache index) and
the cache, so a step for the first ``B`` slots has fixed addresses and shapes: on a GPU it is captured once per
batch bucket (``torch.cuda.CUDAGraph``) and replayed, removing the per-kernel launch cost that dominates
small-batch decoding. On a GPU the step and the sampler are also compiled with ``torch.compile`` (kernel
fusion; eager fallback if compilation fails). Captured graphs are dropped whenever the cache is reallocated or
the decoder's weights are rebound (``decoder.version``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from verl.models.llama import LlamaDecoder
from verl.rollout.native.kv_cache import KVCache
from verl.rollout.native.scheduler import bucket_sizes, pick_bucket
from verl.rollout.sampling import SamplingParams, pick_tokens, sample_tokens

__all__ = ["CompiledOrEager", "ModelRunner"]

logger = logging.getLogger(__name__)


class CompiledOrEager:
    """``fn``, or its ``torch.compile`` version once :meth:`enable` is called; if compiling or running the compiled
    version fails (no triton, an unsupported op), a warning is logged and ``fn`` is used from then on."""

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name
        self.compiled: Callable | None = None

    def enable(self) -> None:
        if self.compiled is None:
            self.compiled = torch.compile(self.fn, fullgraph=True, dynamic=True)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as err:  # noqa: BLE001 - any compiler failure: the eager function still works
                logger.warning("native rollout: torch.compile of %s failed (%s); running it eagerly", self.name, err)
                self.compiled = None
        return self.fn(*args)


class ModelRunner:
    """Prefill and decode passes of one :class:`LlamaDecoder` over a static :class:`KVCache`.

    Args:
        decoder: the model (weights already loaded).
        use_cuda_graphs: capture the decode step per batch bucket (accelerator only).
        use_compile: wrap the decode step in ``torch.compile`` before capture (falls back to eager on failure).
        graph_max_batch: largest captured batch; larger batches run eagerly.
    """

    def __init__(self, decoder: LlamaDecoder, use_cuda_graphs: bool, use_compile: bool, graph_max_batch: int):
        self.decoder = decoder
        self.device = decoder.device
        self.use_cuda_graphs = use_cuda_graphs and self.device.type != "cpu"
        self.use_compile = use_compile and self.device.type != "cpu"
        self.graph_max_batch = graph_max_batch
        self.cache: KVCache | None = None
        self.tokens = self.positions = self.write_index = torch.empty(0, dtype=torch.long)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._graph_key: tuple[int, int] | None = None
        self._pool = None
        self._step = CompiledOrEager(decoder.decode, "the decode step")
        self._pick = CompiledOrEager(pick_tokens, "sampling")
        self.buckets: list[int] = []

    # ------------------------------------------------------------------ memory

    def ensure_cache(self, num_slots: int, max_len: int) -> KVCache:
        """A cache with at least ``num_slots`` slots of ``max_len`` positions (reused when big enough)."""
        c = self.cache
        if c is not None and c.num_slots >= num_slots and c.max_len >= max_len:
            return c
        self.release_cache()
        self.cache = KVCache.allocate(self.decoder.config, num_slots, max_len, self.device, self.decoder.dtype)
        self.tokens = torch.zeros(num_slots, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(num_slots, dtype=torch.long, device=self.device)
        self.write_index = torch.zeros(num_slots, dtype=torch.long, device=self.device)
        self.buckets = bucket_sizes(min(num_slots, self.graph_max_batch)) if self.use_cuda_graphs else []
        logger.info("native rollout: KV cache %d slots x %d positions (%.1f MiB)", num_slots, max_len,
                    self.cache.nbytes() / 2**20)
        return self.cache

    def release_cache(self) -> None:
        """Free the KV cache and every captured graph (their memory pool included)."""
        self._graphs.clear()
        self._pool = None
        self.cache = None
        self.tokens = self.positions = self.write_index = torch.empty(0, dtype=torch.long)

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    # ------------------------------------------------------------------ passes

    def prefill(self, input_ids: torch.Tensor, positions: torch.Tensor, last_index: torch.Tensor,
                slots: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Eager prefill (see :meth:`LlamaDecoder.prefill`); returns ``(N, V)`` last-token logits."""
        assert self.cache is not None, "ensure_cache() before prefill"
        return self.decoder.prefill(input_ids, positions, last_index, self.cache.k, self.cache.v, slots, source)

    def decode_batch_size(self, needed: int) -> int:
        """The batch the decode step runs for ``needed`` leading slots: a captured bucket, else ``needed``."""
        return pick_bucket(self.buckets, needed) or needed

    def decode(self, batch: int) -> torch.Tensor:
        """One decode step for slots ``0 .. batch-1`` from the persistent input buffers -> ``(batch, V)`` logits.

        The returned tensor of a replayed graph is overwritten by the next replay: consume it first.
        """
        assert self.cache is not None, "ensure_cache() before decode"
        self._maybe_compile()
        if batch not in self.buckets:
            return self._run(batch)
        key = (self.decoder.version, id(self.cache))
        if key != self._graph_key:
            self._graphs.clear()
            self._graph_key = key
        if batch not in self._graphs:
            self._graphs[batch] = self._capture(batch)
        graph, logits = self._graphs[batch]
        graph.replay()
        return logits

    def sample(self, logits: torch.Tensor, params: SamplingParams, generator: torch.Generator):
        """Sample on the device (compiled into a few fused kernels when compilation is on)."""
        return sample_tokens(logits, params, generator, pick=self._pick)

    def _maybe_compile(self) -> None:
        if self.use_compile:
            self._step.enable()
            self._pick.enable()

    def _run(self, batch: int) -> torch.Tensor:
        cache = self.cache
        return self._step(self.tokens[:batch], self.positions[:batch], self.write_index[:batch], cache.k, cache.v)

    def _capture(self, batch: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Warm up on a side stream, then capture the step for ``batch`` slots into a CUDA graph.

        Warm-up runs write the same K/V at the same cache index as the real step will, so capturing in the
        middle of a generation is harmless.
        """
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(2):  # the first run compiles (when on) and initialises cuBLAS workspaces
                self._run(batch)
        current.wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = self._run(batch)
        logger.debug("native rollout: captured decode graph for batch %d", batch)
        return graph, logits
