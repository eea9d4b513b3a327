"""Run-level checkpoint bookkeeping shared by the PPO and SFT trainers.

A checkpoint is a directory ``<root>/global_step_N/``. It is written into ``global_step_N.tmp`` and renamed into
place only when complete (a rename within one directory is atomic); the pointer
``latest_checkpointed_iteration.txt`` is replaced last. A crash mid-save therefore leaves the previous
checkpoint and pointer untouched. What goes inside a step directory is the trainers' business.
"""

from __future__ import annotations

import os
import re
import shutil

__all__ = [
    "LATEST_FILE",
    "begin_step",
    "find_latest_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "publish_step",
    "step_dir",
    "step_of",
]

LATEST_FILE = "latest_checkpointed_iteration.txt"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


def step_dir(root: str, step: int) -> str:
    return os.path.join(root, f"global_step_{step}")


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
    """The checkpoint the pointer file names, or None when there is none (a dangling pointer is an error)."""
    pointer = os.path.join(root, LATEST_FILE)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as f:
        text = f.read().strip()
    if not text.isdigit():
        raise ValueError(f"{pointer} should hold a step number, found {text[:50]!r}; write the step of a complete "
                         "global_step_N directory into it, or start without resuming (resume_mode=disable)")
    path = step_dir(root, int(text))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{pointer} names step {text} but {path} is missing; fix the pointer or start "
                                "without resuming (resume_mode=disable)")
    return path


def prune_checkpoints(root: str, keep: int | None) -> list[str]:
    """Delete all but the newest ``keep`` complete checkpoints (None or <= 0 keeps all); returns the deleted."""
    if not keep or keep <= 0:
        return []
    doomed = [path for _, path in list_checkpoints(root)[:-keep]]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def begin_step(root: str, step: int) -> str:
    """A fresh temporary directory for step ``step`` (the leftovers of an interrupted save are removed)."""
    tmp = step_dir(root, step) + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def publish_step(root: str, step: int) -> str:
    """Rename the complete temporary directory into place, then move the pointer; returns the final path."""
    final = step_dir(root, step)
    old = final + ".old"
    if os.path.exists(final):  # a re-save of this step: move the old one aside (cheap) and delete it after
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(final + ".tmp", final)
    pointer = os.path.join(root, LATEST_FILE)
    with open(pointer + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(step))
    os.replace(pointer + ".tmp", pointer)
    if os.path.exists(old):
        shutil.rmtree(old)
    return final
