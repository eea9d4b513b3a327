"""The driver's side of checkpoints: where they go, atomic publication, resume lookup, pruning.

A checkpoint is ``<default_local_dir>/global_step_N/`` with ``actor/``, ``critic/`` (when used) and
``trainer_state.pt`` (data-loader position, step, KL coefficient, generation counter; the driver draws no
random numbers of its own, and each worker's RNG state is in its ``extra_state_*`` file). It is written into
``global_step_N.tmp/`` and renamed into place only when every part is complete; the pointer
``latest_checkpointed_iteration.txt`` is replaced last. A crash mid-save therefore leaves the previous
checkpoint and pointer untouched.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable

__all__ = ["LATEST_FILE", "CheckpointDirs", "find_latest_checkpoint", "publish_checkpoint", "prune_checkpoints"]

LATEST_FILE = "latest_checkpointed_iteration.txt"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


class CheckpointDirs:
    """Paths of one checkpoint being written (``tmp``) and its final name (``final``)."""

    def __init__(self, root: str, step: int):
        self.root = root
        self.step = step
        self.final = os.path.join(root, f"global_step_{step}")
        self.tmp = self.final + ".tmp"

    def part(self, name: str) -> str:
        return os.path.join(self.tmp, name)


def find_latest_checkpoint(root: str) -> str | None:
    """The checkpoint the pointer file names, or None when there is none (a missing target is an error)."""
    pointer = os.path.join(root, LATEST_FILE)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        text = f.read().strip()
    if not text.isdigit():
        raise ValueError(f"{pointer} should hold a step number, found {text[:50]!r}; write the step of a complete "
                         "global_step_N directory into it, or use trainer.resume_mode=disable")
    step = int(text)
    path = os.path.join(root, f"global_step_{step}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{pointer} names step {step} but {path} is missing; fix the pointer or use "
                                "trainer.resume_mode=disable")
    return path


def step_of(path: str) -> int:
    match = _STEP_DIR.match(os.path.basename(os.path.normpath(path)))
    if not match:
        raise ValueError(f"{path} is not a global_step_N checkpoint directory")
    return int(match.group(1))


def publish_checkpoint(dirs: CheckpointDirs, write_parts: Callable[[CheckpointDirs], None]) -> str:
    """Write every part into the temporary directory, then rename it into place and move the pointer."""
    if os.path.exists(dirs.tmp):
        shutil.rmtree(dirs.tmp)  # the leftovers of an interrupted save
    os.makedirs(dirs.tmp)
    write_parts(dirs)
    old = dirs.final + ".old"
    if os.path.exists(dirs.final):  # a re-save of this step: move the old one aside (cheap) and delete it after
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(dirs.final, old)
    os.replace(dirs.tmp, dirs.final)
    pointer = os.path.join(dirs.root, LATEST_FILE)
    with open(pointer + ".tmp", "w") as f:
        f.write(str(dirs.step))
    os.replace(pointer + ".tmp", pointer)
    if os.path.exists(old):
        shutil.rmtree(old)
    return dirs.final


def prune_checkpoints(root: str, keep: int | None) -> list[str]:
    """Delete all but the newest ``keep`` complete checkpoints; returns what was deleted."""
    if not keep or keep <= 0 or not os.path.isdir(root):
        return []
    steps = sorted(int(m.group(1)) for d in os.listdir(root) if (m := _STEP_DIR.match(d)))
    removed = []
    for step in steps[:-keep]:
        path = os.path.join(root, f"global_step_{step}")
        shutil.rmtree(path)
        removed.append(path)
    return removed
