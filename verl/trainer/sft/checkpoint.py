"""Run-level checkpoint bookkeeping: ``<root>/global_step_N/`` written atomically, and the latest-step file.

Every rank writes its part into ``<root>/.tmp_global_step_N``; once all have finished, rank 0 renames it to
``global_step_N`` (a rename within one directory is atomic), then replaces
``latest_checkpointed_iteration.txt`` (written to a temporary file first). A run killed mid-save therefore
leaves either the previous checkpoint or the new one, never a half-written ``global_step_N``. What goes inside a
step directory is :func:`verl.workers.fsdp.save_checkpoint`'s business.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable

import torch.distributed as dist

__all__ = [
    "LATEST_FILE",
    "find_latest_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "save_step_atomically",
    "step_of",
]

LATEST_FILE = "latest_checkpointed_iteration.txt"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def step_of(path: str) -> int:
    """The ``N`` of a ``.../global_step_N`` directory (a trailing ``/actor``-style part is allowed)."""
    for part in reversed(os.path.normpath(path).split(os.sep)):
        match = _STEP_DIR.match(part)
        if match:
            return int(match.group(1))
    raise ValueError(f"{path!r} is not a checkpoint directory named global_step_<N>")


def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """``(step, path)`` of the complete ``global_step_*`` directories under ``root``, oldest first."""
    if not os.path.isdir(root):
        return []
    found = [(int(m.group(1)), os.path.join(root, name)) for name in os.listdir(root)
             if (m := _STEP_DIR.match(name)) and os.path.isdir(os.path.join(root, name))]
    return sorted(found)


def find_latest_checkpoint(root: str) -> str | None:
    """The directory named by ``<root>/latest_checkpointed_iteration.txt``, or None when there is none."""
    latest = os.path.join(root, LATEST_FILE)
    if not os.path.isfile(latest):
        return None
    with open(latest, encoding="utf-8") as f:
        text = f.read().strip()
    if not text.isdigit():
        raise ValueError(f"{latest} should hold a step number, got {text[:50]!r}")
    path = os.path.join(root, f"global_step_{int(text)}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{latest} names step {text} but {path} does not exist")
    return path


def prune_checkpoints(root: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` ``global_step_*`` directories; returns the deleted paths."""
    doomed = [path for _, path in list_checkpoints(root)[:-keep]] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def save_step_atomically(root: str, step: int, save: Callable[[str], None], rank: int,
                         max_to_keep: int | None = None) -> str:
    """Call ``save(tmp_dir)`` on every rank, then publish ``<root>/global_step_<step>`` (see module docstring).

    Returns the final directory. Every rank must call this (it holds barriers).
    """
    final = os.path.join(root, f"global_step_{step}")
    tmp = os.path.join(root, f".tmp_global_step_{step}")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while saving
        os.makedirs(tmp)
    _barrier()
    save(tmp)
    _barrier()
    if rank == 0:
        if os.path.isdir(final):  # re-saving a step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        latest_tmp = os.path.join(root, f".{LATEST_FILE}.tmp")
        with open(latest_tmp, "w", encoding="utf-8") as f:
            f.write(str(step))
        os.replace(latest_tmp, os.path.join(root, LATEST_FILE))
        if max_to_keep:
            prune_checkpoints(root, max_to_keep)
    _barrier()
    return final
