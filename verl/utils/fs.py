"""verl's ``verl.utils.fs``: make a model or data path local before reading it.

Only local paths exist here (no HDFS client); they are returned as they are, which is what verl does for them.
"""

from __future__ import annotations

import os

__all__ = ["copy_to_local", "is_non_local"]


def is_non_local(path: str) -> bool:
    """Whether ``path`` names a remote file system (``hdfs://``)."""
    return str(path).startswith("hdfs://")


def copy_to_local(src: str, cache_dir: str | None = None, filelock: str = ".file.lock", verbose: bool = False,
                  always_recopy: bool = False, use_shm: bool = False) -> str:  # fmt: skip
    """The local path of ``src`` (``~`` expanded); a remote (``hdfs://``) path raises, naming the fix."""
    if is_non_local(src):
        raise NotImplementedError(f"{src!r}: remote file systems are not supported; copy it to a local path first")
    return os.path.expanduser(src)
