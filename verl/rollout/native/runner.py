"""Runs the decoder on the device: owns the KV cache, the per-slot decode inputs and the captured CUDA graphs.

The decode step reads its inputs from three persistent ``(S,)`` buffers (token, RoPE position, cache index) and
the cache, so a step for the first ``B`` slots has fixed addresses and shapes: on a GPU it is captured once per
batch bucket (``torch.cuda.CUDAGraph``, the step itself optionally compiled with ``torch.compile`` for kernel
fusion) and replayed, removing the per-kernel launch cost that dominates small-batch decoding. Captured graphs
are dropped whenever the cache is reallocated or the decoder's weights are rebound (``decoder.version``).
"""

from __future__ import annotations

import logging

import torch

from verl.models.llama import LlamaDecoder
from verl.rollout.native.kv_cache import KVCache
from verl.rollout.native.scheduler import bucket_sizes, pick_bucket

__all__ = ["ModelRunner"]

logger = logging.getLogger(__name__)


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
        self.use_compile = use_compile and self.use_cuda_graphs
        self.graph_max_batch = graph_max_batch
        self.cache: KVCache | None = None
        self.tokens = self.positions = self.write_index = torch.empty(0, dtype=torch.long)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._graph_key: tuple[int, int] | None = None
        self._pool = None
        self._step = decoder.decode
        self._compiled = False
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

    def _run(self, batch: int) -> torch.Tensor:
        cache = self.cache
        return self._step(self.tokens[:batch], self.positions[:batch], self.write_index[:batch], cache.k, cache.v)

    def _warm_up(self, batch: int) -> None:
        """Run the step twice (compiling it on first use); fall back to the eager step if compilation fails."""
        if self.use_compile and not self._compiled:
            self._compiled = True
            self._step = torch.compile(self.decoder.decode, fullgraph=True, dynamic=True)
        try:
            for _ in range(2):
                self._run(batch)
        except Exception as err:  # no triton, an unsupported op, ...: graphs of the eager step still help
            if self._step is self.decoder.decode:
                raise
            logger.warning("native rollout: torch.compile of the decode step failed (%s); capturing it eagerly", err)
            self._step = self.decoder.decode
            for _ in range(2):
                self._run(batch)

    def _capture(self, batch: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Warm up on a side stream, then capture the step for ``batch`` slots into a CUDA graph.

        Warm-up runs write the same K/V at the same cache index as the real step will, so capturing in the
        middle of a generation is harmless.
        """
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            self._warm_up(batch)
        current.wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = self._run(batch)
        logger.debug("native rollout: captured decode graph for batch %d", batch)
        return graph, logits
