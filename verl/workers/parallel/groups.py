"""Consecutive-rank process groups of one worker group, shared by every model-parallel scheme here.

A degree ``size`` splits the worker group's ``world`` ranks into ``world / size`` groups of consecutive ranks:
group ``d`` (the *data-parallel rank*) is ranks ``[d * size, (d + 1) * size)``. The ranks of one group hold the
same data; the first one returns the group's results to the driver. Ulysses sequence parallelism
(:mod:`.ulysses`) and the native engine's tensor-parallel rollout (:mod:`verl.rollout.native.tensor_parallel`)
each build their own groups this way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

__all__ = ["RankGroup", "check_heads", "make_rank_group"]


@dataclass(frozen=True)
class RankGroup:
    """This rank's group: ranks ``[dp_rank * size, (dp_rank + 1) * size)`` of the worker group."""

    group: dist.ProcessGroup | None
    size: int
    rank: int  # within the group
    dp_rank: int  # which group

    @property
    def is_collect(self) -> bool:
        """Whether this rank returns the group's results to the driver (its first rank)."""
        return self.rank == 0

    @property
    def src(self) -> int:
        """The global rank of the group's first rank (the source of broadcasts)."""
        return self.dp_rank * self.size


def make_rank_group(size: int, key: str) -> RankGroup:
    """Split the default process group into consecutive groups of ``size`` ranks (every rank must call this)."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    if size < 1 or world % size:
        raise ValueError(f"{key}={size} must divide the worker group's {world} ranks")
    if size == 1:
        return RankGroup(None, 1, 0, rank)
    mine = None
    for start in range(0, world, size):  # new_group is collective: every rank creates every group
        group = dist.new_group(list(range(start, start + size)))
        if start <= rank < start + size:
            mine = group
    return RankGroup(mine, size, rank % size, rank // size)


def check_heads(config, size: int, key: str) -> None:
    """Attention and key/value head counts of a transformers ``config`` must divide by ``size``."""
    if size <= 1:
        return
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if heads is None:
        raise ValueError(f"{key}={size}: the model config has no num_attention_heads to split over the group")
    if heads % size or kv_heads % size:
        raise ValueError(f"{key}={size} must divide the model's {heads} attention heads and {kv_heads} key/value "
                         f"heads (each rank attends with heads / {key}); use a divisor of {kv_heads}")
