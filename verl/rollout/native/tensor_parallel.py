"""Tensor-parallel rollout for the native engine (``actor_rollout_ref.rollout.tensor_model_parallel_size``).

The ``tp`` ranks of one group (consecutive ranks, :func:`~verl.workers.parallel.groups.make_rank_group`) run one
model replica together, Megatron-style (Shoeybi et al. 2019, "Megatron-LM"):

- attention: rank ``r`` holds query heads ``[r H/tp, (r+1) H/tp)`` and key/value heads ``[r Hkv/tp, (r+1) Hkv/tp)``
  (rows of ``q/k/v_proj``, which keeps each query head with its GQA key/value head) and the matching *columns*
  of ``o_proj``; its KV cache holds only those key/value heads;
- MLP: rows ``[r I/tp, (r+1) I/tp)`` of ``gate_proj``/``up_proj`` and the same columns of ``down_proj``;
- ``o_proj`` and ``down_proj`` then give partial sums: one all-reduce over the group after each (their biases are
  added once, after the sum);
- embeddings, norms and the output projection are replicated, so every rank computes the same logits; the token
  sampled on the group's first rank is broadcast to the others, so all ranks continue identically.

The decoder code (:class:`~verl.models.llama.LlamaDecoder`) is unchanged: :class:`TensorParallelDecoder` is built
for the per-rank shape (``H/tp`` heads, ``I/tp`` MLP columns), takes each full weight's slice as it is loaded, and
overrides the one extension point ``_out_proj`` with the reducing version.

Weights: each weight arrives whole (gathered one tensor at a time from the actor's FSDP shards, or read from the
checkpoint) and only this rank's slice is kept; tensors already of the slice's size (read sliced from a
safetensors file, :func:`checkpoint_slicer`) are taken as they are.

The decode step of a group runs eagerly (no CUDA graphs, no ``torch.compile``): the all-reduces are not captured.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F

from verl.models.config import DecoderConfig
from verl.models.llama import LlamaDecoder
from verl.models.weights import strip_wrappers
from verl.rollout.native.runner import ModelRunner
from verl.rollout.parallel import check_tp_shape
from verl.rollout.sampling import SamplingParams
from verl.workers.parallel.groups import RankGroup

__all__ = ["TensorParallelDecoder", "TensorParallelRunner", "build_decoder", "build_runner", "checkpoint_slicer",
           "local_config", "shard_dim"]

# HF name suffix -> the dimension split over the group (0: output rows, 1: input columns); others are replicated
_SPLIT = {
    "self_attn.q_proj.weight": 0, "self_attn.q_proj.bias": 0,
    "self_attn.k_proj.weight": 0, "self_attn.k_proj.bias": 0,
    "self_attn.v_proj.weight": 0, "self_attn.v_proj.bias": 0,
    "self_attn.o_proj.weight": 1,
    "mlp.gate_proj.weight": 0, "mlp.gate_proj.bias": 0,
    "mlp.up_proj.weight": 0, "mlp.up_proj.bias": 0,
    "mlp.down_proj.weight": 1,
}
_LAYER_SUFFIX = re.compile(r"^model\.layers\.\d+\.(.+)$")


def shard_dim(name: str) -> int | None:
    """The dimension of HF weight ``name`` split over the tensor-parallel group; ``None``: replicated."""
    match = _LAYER_SUFFIX.match(strip_wrappers(name))
    return _SPLIT.get(match.group(1)) if match else None


def local_config(config: DecoderConfig, tp: int) -> DecoderConfig:
    """The shape one rank of a ``tp`` group runs: ``H/tp`` query heads, ``Hkv/tp`` key/value heads, ``I/tp`` MLP."""
    check_tp_shape(config.num_heads, config.num_kv_heads, config.intermediate_size, tp)
    return dataclasses.replace(config, num_heads=config.num_heads // tp, num_kv_heads=config.num_kv_heads // tp,
                               intermediate_size=config.intermediate_size // tp)


def _slice(tensor: torch.Tensor, dim: int, rank: int, size: int) -> torch.Tensor:
    step = tensor.shape[dim] // size
    return tensor.narrow(dim, rank * step, step)


class TensorParallelDecoder(LlamaDecoder):
    """A :class:`LlamaDecoder` for one rank of a tensor-parallel group (see the module docstring).

    Args:
        config: the *full* model's shape (the rank's shape is derived from it).
        device, dtype: as :class:`LlamaDecoder`.
        group: this rank's tensor-parallel group (size > 1).
    """

    def __init__(self, config: DecoderConfig, device: torch.device | str, dtype: torch.dtype, group: RankGroup):
        super().__init__(local_config(config, group.size), device, dtype)
        self.full_config = config
        self.group = group

    def _shard(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        size, rank = self.group.size, self.group.rank
        for name, tensor in named_tensors:
            dim = shard_dim(name)
            if dim is None:
                yield name, tensor
                continue
            if hasattr(tensor, "full_tensor"):  # an FSDP2 shard: gathered whole, this rank's slice kept
                tensor = tensor.full_tensor()
            if self._is_full(name, tensor.shape[dim]):
                # an owned copy: the full tensor is freed once the caller drops it
                tensor = _slice(tensor.detach(), dim, rank, size).clone(memory_format=torch.contiguous_format)
            yield name, tensor

    def _is_full(self, name: str, length: int) -> bool:
        c = self.full_config
        suffix = _LAYER_SUFFIX.match(strip_wrappers(name)).group(1)
        if suffix.startswith("mlp."):
            return length == c.intermediate_size
        if suffix.startswith(("self_attn.k_proj", "self_attn.v_proj")):
            return length == c.kv_size
        return length == c.q_size  # q_proj rows, o_proj columns

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], share: bool = True) -> list[str]:
        """Load full HF weights (or this rank's slices of them); each split weight keeps only this rank's slice."""
        return super().load_weights(self._shard(named_tensors), share)

    def _out_proj(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This rank's partial product, summed over the group; the bias once, after the sum."""
        out = F.linear(x, weight)
        dist.all_reduce(out, group=self.group.group)
        return out if bias is None else out + bias


class TensorParallelRunner(ModelRunner):
    """A :class:`ModelRunner` whose sampled tokens (and their log-probs) come from the group's first rank."""

    def __init__(self, decoder: TensorParallelDecoder, graph_max_batch: int):
        super().__init__(decoder, use_cuda_graphs=False, use_compile=False, graph_max_batch=graph_max_batch)
        self.group = decoder.group

    def sample(self, logits: torch.Tensor, params: SamplingParams, generator: torch.Generator):
        tokens, log_probs = super().sample(logits, params, generator)
        dist.broadcast(tokens, src=self.group.src, group=self.group.group)
        dist.broadcast(log_probs, src=self.group.src, group=self.group.group)
        return tokens, log_probs


def build_decoder(config: DecoderConfig, device: torch.device, dtype: torch.dtype,
                  group: RankGroup | None) -> LlamaDecoder:
    """The plain decoder, or this rank's tensor-parallel one when ``group`` spans more than one rank."""
    if group is None or group.size == 1:
        return LlamaDecoder(config, device, dtype)
    return TensorParallelDecoder(config, device, dtype, group)


def build_runner(decoder: LlamaDecoder, use_cuda_graphs: bool, use_compile: bool, graph_max_batch: int) -> ModelRunner:
    if isinstance(decoder, TensorParallelDecoder):
        return TensorParallelRunner(decoder, graph_max_batch)
    return ModelRunner(decoder, use_cuda_graphs=use_cuda_graphs, use_compile=use_compile, graph_max_batch=graph_max_batch)


def checkpoint_slicer(group: RankGroup) -> Callable[[str, object], torch.Tensor]:
    """``read(name, safetensors_slice) -> tensor``: this rank's slice of a split weight read straight from the file
    (only those bytes), any other tensor whole; for :func:`verl.rollout.builder.iter_checkpoint_tensors`."""

    def read(name: str, part) -> torch.Tensor:
        dim = shard_dim(name)
        if dim is None:
            return part[:]
        length = part.get_shape()[dim]
        step = length // group.size
        lo, hi = group.rank * step, (group.rank + 1) * step
        return part[lo:hi] if dim == 0 else part[:, lo:hi]

    return read
