"""SFT checkpoints: every rank writes its part of ``global_step_N`` between barriers, rank 0 publishes it
atomically (:mod:`verl.utils.checkpoint`: written into ``global_step_N.tmp``, renamed into place, pointer last)."""

from __future__ import annotations

from collections.abc import Callable

import torch.distributed as dist

from verl.utils.checkpoint import LATEST_FILE, begin_step, find_latest_checkpoint, prune_checkpoints, publish_step, step_dir, step_of

__all__ = ["LATEST_FILE", "find_latest_checkpoint", "prune_checkpoints", "save_step_atomically", "step_of"]


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save_step_atomically(root: str, step: int, save: Callable[[str], None], rank: int,
                         max_to_keep: int | None = None) -> str:
    """Call ``save(tmp_dir)`` on every rank, then publish ``<root>/global_step_<step>``; returns its path.

    Every rank must call this (it holds barriers).
    """
    if rank == 0:
        begin_step(root, step)
    _barrier()
    save(step_dir(root, step) + ".tmp")
    _barrier()
    if rank == 0:
        publish_step(root, step)
        prune_checkpoints(root, max_to_keep)
    _barrier()
    return step_dir(root, step)
