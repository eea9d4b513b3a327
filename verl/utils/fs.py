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
    """The local path of ``src`` (``~`` expanded); a remote (``hdfs://``) path raises, naming the fix.

    With ``use_shm``, a directory is copied once to ``/dev/shm/verl-cache/<hash of its path>/`` (memory-backed,
    so later loads read RAM) and that copy's path is returned; ``always_recopy`` refreshes it.
    """
    if is_non_local(src):
        raise NotImplementedError(f"{src!r}: remote file systems are not supported; copy it to a local path first")
    path = os.path.expanduser(src)
    return _copy_to_shm(path, always_recopy) if use_shm else path


def _copy_to_shm(path: str, always_recopy: bool) -> str:
    import hashlib
    import shutil

    if not os.path.isdir("/dev/shm"):
        raise NotImplementedError("use_shm=true needs /dev/shm (a Linux shared-memory file system); set use_shm=false")
    key = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
    dst = os.path.join("/dev/shm", "verl-cache", key, os.path.basename(os.path.normpath(path)))
    if always_recopy and os.path.isdir(dst):
        shutil.rmtree(dst)
    if not os.path.isdir(dst):
        tmp = f"{dst}.tmp{os.getpid()}"  # ranks of one node may copy at once: each to its own, then rename
        shutil.copytree(path, tmp)
        try:
            os.rename(tmp, dst)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return dst
