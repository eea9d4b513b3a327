"""Per-rank batch sizes and micro-batch splitting.

The config counts ``ppo_mini_batch_size`` in prompts, globally. A worker turns it into trajectories per rank
once, into a :class:`BatchPlan`, and never writes it back into the config. Micro-batches are either a fixed
number of sequences or, with ``use_dynamic_bsz``, packed by a token budget; with dynamic packing every rank
uses the same number of micro-batches so FSDP's collectives line up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from verl.protocol import DataProto
from verl.utils.seqlen_balancing import greedy_partition

__all__ = ["BatchPlan", "max_over_ranks", "split_micro_batches", "to_device", "token_balanced_partitions"]


@dataclass(frozen=True)
class BatchPlan:
    """Sizes of one rank's work in ``update_*`` / ``compute_*``.

    Attributes:
        mini_batch_size: trajectories per optimizer step on this rank (``ppo_mini_batch_size * n / dp``).
        micro_batch_size: sequences per forward on this rank (fixed micro-batching), or None.
        max_token_len: token budget of one micro-batch (dynamic micro-batching), or None.
    """

    mini_batch_size: int
    micro_batch_size: int | None
    max_token_len: int | None

    @classmethod
    def for_update(cls, section: str, ppo_mini_batch_size: int, rollout_n: int, dp_size: int,
                   micro_batch_size_per_gpu: int | None, use_dynamic_bsz: bool, max_token_len_per_gpu: int) -> BatchPlan:
        """Derive and check the plan of a PPO update; errors name ``section``'s keys."""
        trajectories = ppo_mini_batch_size * rollout_n
        if trajectories % dp_size:
            raise ValueError(
                f"{section}.ppo_mini_batch_size={ppo_mini_batch_size} x rollout.n={rollout_n} = {trajectories} "
                f"trajectories cannot be split over {dp_size} ranks; make it a multiple of {dp_size}"
            )
        per_rank = trajectories // dp_size
        if use_dynamic_bsz:
            return cls(per_rank, None, max_token_len_per_gpu)
        if micro_batch_size_per_gpu is None:
            raise ValueError(f"set {section}.ppo_micro_batch_size_per_gpu (or {section}.use_dynamic_bsz=true)")
        if micro_batch_size_per_gpu > per_rank:
            raise ValueError(
                f"{section}.ppo_micro_batch_size_per_gpu={micro_batch_size_per_gpu} is larger than the "
                f"{per_rank} trajectories of one mini-batch on one rank; lower it"
            )
        return cls(per_rank, micro_batch_size_per_gpu, None)

    @classmethod
    def for_forward(cls, micro_batch_size_per_gpu: int | None, use_dynamic_bsz: bool, max_token_len_per_gpu: int) -> BatchPlan:
        """Plan of a forward-only pass (log-probs, values, scores)."""
        if use_dynamic_bsz:
            return cls(0, None, max_token_len_per_gpu)
        return cls(0, micro_batch_size_per_gpu or 8, None)


def token_balanced_partitions(lengths: list[int], max_tokens: int, min_parts: int = 1) -> list[list[int]]:
    """Split sample indices into the fewest groups whose token sums stay within ``max_tokens`` (at least
    ``min_parts`` groups), balanced by :func:`verl.utils.seqlen_balancing.greedy_partition`."""
    if lengths and max(lengths) > max_tokens:
        raise ValueError(
            f"a sequence of {max(lengths)} tokens exceeds the micro-batch token budget {max_tokens}; raise "
            "*_max_token_len_per_gpu to at least max_prompt_length + max_response_length"
        )
    parts = max(min_parts, -(-sum(lengths) // max_tokens), 1)
    while True:
        groups = greedy_partition(lengths, parts, equal_size=False)
        if all(sum(lengths[i] for i in g) <= max_tokens for g in groups):
            return [g for g in groups if g] or [[]]
        parts += 1


def split_micro_batches(data: DataProto, plan: BatchPlan) -> tuple[list[DataProto], torch.Tensor | None]:
    """Micro-batches of ``data`` and, for dynamic packing, the permutation that restores the input order
    of results concatenated micro-batch by micro-batch (None when the order is kept)."""
    if plan.max_token_len is None:
        return data.split(plan.micro_batch_size or len(data)), None
    lengths = data.batch["attention_mask"].sum(-1).tolist()
    groups = token_balanced_partitions(lengths, plan.max_token_len)
    agreed = max_over_ranks(len(groups))  # same count on every rank, so FSDP's collectives line up
    if agreed > len(groups):
        groups = token_balanced_partitions(lengths, plan.max_token_len, min_parts=agreed)
        if len(groups) < agreed:  # fewer sequences than micro-batches: this rank cannot keep step with the others
            raise RuntimeError(
                f"this rank has {len(lengths)} sequences but another needs {agreed} micro-batches of "
                f"{plan.max_token_len} tokens; give every rank the same number of sequences or raise the token budget"
            )
    order = [i for g in groups for i in g]
    restore = torch.empty(len(order), dtype=torch.long)
    restore[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return [data[g] for g in groups], restore


def max_over_ranks(value: int, group=None) -> int:
    """The largest ``value`` over the ranks of ``group`` (default: every rank), carried on the CPU."""
    if not (dist.is_initialized() and dist.get_world_size(group) > 1):
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group if group is not None else _cpu_group())
    return int(t.item())


_CPU_GROUP: tuple = (None, None)  # (the default group it was made for, the gloo group)


def _cpu_group():
    """A gloo group for small host-side integers (nccl groups only carry device tensors); made again when the
    process has joined a new world since."""
    global _CPU_GROUP
    world = dist.group.WORLD
    if _CPU_GROUP[0] is not world:
        _CPU_GROUP = (world, dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else world)
    return _CPU_GROUP[1]


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Host tensors on ``device`` with one host-to-device copy: their bytes are laid out in one pinned buffer,
    copied without blocking, and viewed back as the original dtypes and shapes. On CPU: the tensors as they are.
    """
    if device.type == "cpu":
        return {k: t.cpu() for k, t in tensors.items()}
    layout, size = [], 0
    for key, t in tensors.items():
        t = t.detach().cpu().contiguous()
        nbytes = t.numel() * t.element_size()
        layout.append((key, t, size, nbytes))
        size += -(-nbytes // 16) * 16  # 16-byte aligned, so every slice can be viewed as its dtype
    buffer = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    for _, t, start, nbytes in layout:
        buffer[start : start + nbytes].copy_(t.reshape(-1).view(torch.uint8))
    moved = buffer.to(device, non_blocking=True)
    return {key: moved[start : start + nbytes].view(t.dtype).view(t.shape) for key, t, start, nbytes in layout}
