"""The PPO driver's checkpoints: ``global_step_N/`` with ``actor/``, ``critic/`` (when used) and
``trainer_state.pt`` (data-loader position, KL coefficient, generation counter), published atomically by
:mod:`verl.utils.checkpoint` (every part written first, then renamed into place, the pointer moved last)."""

from __future__ import annotations

import os
from collections.abc import Callable

from verl.utils.checkpoint import (
    LATEST_FILE,
    begin_step,
    find_latest_checkpoint,
    prune_checkpoints,
    publish_step,
    step_dir,
    step_of,
)

__all__ = ["LATEST_FILE", "CheckpointDirs", "find_latest_checkpoint", "prune_checkpoints", "publish_checkpoint",
           "step_of"]


class CheckpointDirs:
    """Paths of one checkpoint being written (``tmp``) and its final name (``final``)."""

    def __init__(self, root: str, step: int):
        self.root = root
        self.step = step
        self.final = step_dir(root, step)
        self.tmp = self.final + ".tmp"

    def part(self, name: str) -> str:
        return os.path.join(self.tmp, name)


def publish_checkpoint(dirs: CheckpointDirs, write_parts: Callable[[CheckpointDirs], None]) -> str:
    """Write every part into the temporary directory, then rename it into place and move the pointer."""
    begin_step(dirs.root, dirs.step)
    write_parts(dirs)
    return publish_step(dirs.root, dirs.step)
