"""Prompt lengths of a dataset, measured once before training starts (and cached on disk).

:class:`~verl.data.rl_dataset.RLHFDataset` measures every prompt it will serve when it is built, so that
``truncation=error`` fails before any worker starts, naming the file and row of the first prompt too long for
``data.max_prompt_length`` (instead of crashing the run when that row's batch comes up, hours in), and
``filter_overlong_prompts`` drops rows up front.

Measuring renders each row's chat template and tokenises it in batches, with a progress bar on large files.
The lengths of a file are cached under ``$VERL_CACHE_DIR/prompt_lengths`` (default ``~/.cache/verl``), keyed by
the file (path, size, modification time), the tokenizer (its vocabulary, merges and special tokens), the chat
template and its keyword arguments and the prompt column: a restart with the same data and tokenizer reads
them back instead of measuring again. ``VERL_PROMPT_LENGTH_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["cache_dir", "file_prompt_lengths", "measure_prompt_lengths", "tokenizer_fingerprint"]

logger = logging.getLogger(__name__)

BATCH_ROWS = 1024
PROGRESS_MIN_ROWS = 20_000
"""Files with at least this many rows show a progress bar while they are measured."""

_FINGERPRINTS: dict[int, str] = {}


def cache_dir() -> str | None:
    """Where prompt lengths are cached, or ``None`` when the cache is off."""
    if os.environ.get("VERL_PROMPT_LENGTH_CACHE", "1").lower() in ("0", "false", "no", "off"):
        return None
    root = os.environ.get("VERL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "verl")
    return os.path.join(root, "prompt_lengths")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides a tokenizer's output: its class, vocabulary and merges (the fast tokenizer's
    serialised form when there is one), special tokens and chat template."""
    key = id(tokenizer)
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    serialized = None
    if backend is not None and hasattr(backend, "to_str"):
        try:
            serialized = backend.to_str()
        except Exception:  # some backends cannot serialise; fall back to the vocabulary
            serialized = None
    if serialized is None:
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        serialized = json.dumps(sorted(vocab.items()))
    h.update(serialized.encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


def _cache_path(path: str, tokenizer: Any, extra: dict[str, Any]) -> str | None:
    root = cache_dir()
    if root is None:
        return None
    st = os.stat(path)
    key = json.dumps({"file": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                      "tokenizer": tokenizer_fingerprint(tokenizer), **extra}, sort_keys=True, default=str)
    return os.path.join(root, hashlib.sha256(key.encode()).hexdigest()[:32] + ".npy")


def _load(cache: str | None, n: int) -> np.ndarray | None:
    if cache is None or not os.path.isfile(cache):
        return None
    try:
        lengths = np.load(cache)
    except (OSError, ValueError):
        return None
    return lengths if lengths.ndim == 1 and len(lengths) == n else None


def _store(cache: str | None, lengths: np.ndarray) -> None:
    if cache is None:
        return
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cache), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, lengths)
        os.replace(tmp, cache)  # atomic: a reader never sees half a file
    except OSError as err:  # a read-only home: measure again next time
        logger.debug("prompt-length cache not written (%s)", err)


def measure_prompt_lengths(rows: Sequence[dict[str, Any]], render: Callable[[Any], str], tokenizer: Any,
                           prompt_key: str, name: str = "prompts") -> np.ndarray:
    """The token count of each row's templated prompt, measured in batches (a progress bar on many rows)."""
    lengths = np.zeros(len(rows), dtype=np.int64)
    progress = None
    if len(rows) >= PROGRESS_MIN_ROWS:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(rows), desc=f"prompt lengths of {name}", unit="row")
    for start in range(0, len(rows), BATCH_ROWS):
        chunk = rows[start : start + BATCH_ROWS]
        texts = [render(row[prompt_key]) for row in chunk]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths[start : start + len(chunk)] = [len(x) for x in ids]
        if progress is not None:
            progress.update(len(chunk))
    if progress is not None:
        progress.close()
    return lengths


def file_prompt_lengths(
    path: str,
    rows: Sequence[dict[str, Any]],
    render: Callable[[Any], str],
    tokenizer: Any,
    prompt_key: str,
    cache_extra: dict[str, Any] | None = None,
) -> np.ndarray:
    """The token count of each row's templated prompt (what the dataset's items hold), for all rows of ``path``.

    Args:
        path: the data file the rows come from (its identity keys the cache).
        rows: every row of that file, in order.
        render: turns a row's messages into the prompt text (the chat template).
        tokenizer: tokenises the text (``add_special_tokens=False``, as the dataset does).
        prompt_key: the column holding the messages.
        cache_extra: more settings the lengths depend on (chat-template keyword arguments, ...).
    """
    extra = {"prompt_key": prompt_key, **(cache_extra or {})}
    cache = _cache_path(path, tokenizer, extra)
    cached = _load(cache, len(rows))
    if cached is not None:
        logger.info("prompt lengths of %s read from the cache %s", path, cache)
        return cached
    lengths = measure_prompt_lengths(rows, render, tokenizer, prompt_key, os.path.basename(path))
    _store(cache, lengths)
    return lengths
