"""Shared by the preprocessors: read a dataset's splits from a local path or the Hugging Face Hub, write parquet.

A source is a Hugging Face dataset name (``openai/gsm8k``) or a local path:

- a directory holding split files (``train*.parquet`` / ``.jsonl`` / ``.json`` and ``test*...``, searched
  recursively, so a ``git clone`` of a Hub dataset repo works), or a ``datasets.save_to_disk`` directory;
- a single file, read as the train split; its test split is the sibling file whose name has ``test`` in place
  of ``train`` (``train.jsonl`` -> ``test.jsonl``).
"""

from __future__ import annotations

import argparse
import glob
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from verl.data.rl_dataset import read_rows

__all__ = ["DatasetUnavailableError", "add_common_args", "load_splits", "run_preprocessor", "write_parquet"]

_EXTENSIONS = (".parquet", ".jsonl", ".json")


class DatasetUnavailableError(RuntimeError):
    """The dataset could not be read (offline, unreachable, or not found); the message says what to pass."""


def _split_files(directory: str, split: str) -> list[str]:
    found = []
    for ext in _EXTENSIONS:
        found += glob.glob(os.path.join(directory, "**", f"{split}*{ext}"), recursive=True)
    return sorted(set(found))


def _load_local(path: str, splits: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "dataset_dict.json")):  # datasets.save_to_disk layout
            import datasets

            ds = datasets.load_from_disk(path)
            return {s: [dict(r) for r in ds[s]] for s in splits}
        out = {}
        for split in splits:
            files = _split_files(path, split)
            if not files:
                raise DatasetUnavailableError(
                    f"{path}: no {split} split file ({split}*.parquet, {split}*.jsonl or {split}*.json) found"
                )
            out[split] = [row for f in files for row in read_rows(f)]
        return out
    base = os.path.basename(path)
    if "train" not in base:
        raise DatasetUnavailableError(
            f"{path}: a single file is read as the train split and its name must contain 'train' (so the test "
            "split is found beside it); or pass a directory with train* and test* files"
        )
    out = {}
    for split in splits:
        sibling = os.path.join(os.path.dirname(path), base.replace("train", split))
        if not os.path.isfile(sibling):
            raise DatasetUnavailableError(f"{path}: the {split} split file {sibling} does not exist")
        out[split] = read_rows(sibling)
    return out


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "") or os.environ.get("HF_HUB_OFFLINE", "0") not in (
        "0",
        "",
    ):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def load_splits(source: str, config_name: str | None = None, splits: tuple[str, ...] = ("train", "test")
                ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """``{split: rows}`` from a local path or a Hugging Face dataset name (see the module docstring).

    Raises:
        DatasetUnavailableError: the path lacks a split, or the Hub cannot be reached (offline mode included):
            the message tells the user to pass a local copy.
    """
    local = os.path.expanduser(source)
    if os.path.exists(local):
        return _load_local(local, splits)
    hint = (
        f"could not load the dataset {source!r} from the Hugging Face Hub ({{why}}). Download it where there is "
        "network access (e.g. `git clone https://huggingface.co/datasets/" + source + "`) and pass the local "
        "directory or file: --data_source /path/to/copy"
    )
    if not _hub_reachable():
        raise DatasetUnavailableError(hint.format(why="offline mode is set or the Hub is unreachable"))
    try:
        import datasets

        ds = datasets.load_dataset(source, config_name)
        return {s: [dict(r) for r in ds[s]] for s in splits}
    except Exception as exc:
        raise DatasetUnavailableError(hint.format(why=f"{type(exc).__name__}: {exc}")) from exc


def write_parquet(rows: list[dict[str, Any]], path: str) -> None:
    """Write rows (dicts with the same keys) to a parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def add_common_args(parser: argparse.ArgumentParser, default_source: str) -> None:
    parser.add_argument("--local_dir", "--local_save_dir", dest="local_dir", default=None,
                        help="output directory for train.parquet and test.parquet (required)")  # fmt: skip
    parser.add_argument("--data_source", "--local_dataset_path", dest="data_source", default=default_source,
                        help=f"Hugging Face dataset name or local directory/file (default {default_source})")  # fmt: skip


def run_preprocessor(
    argv: list[str] | None,
    description: str,
    default_source: str,
    config_name: str | None,
    make_row: Callable[[dict[str, Any], str, int], dict[str, Any] | None],
) -> dict[str, str]:
    """Parse the command line, convert both splits with ``make_row(example, split, index)`` (``None`` skips an
    example), write ``train.parquet`` and ``test.parquet``; return ``{split: path}``."""
    parser = argparse.ArgumentParser(description=description)
    add_common_args(parser, default_source)
    args = parser.parse_args(argv)
    if not args.local_dir:
        parser.error("--local_dir is required (where train.parquet and test.parquet are written)")
    try:
        raw = load_splits(args.data_source, config_name)
    except DatasetUnavailableError as exc:
        raise SystemExit(f"error: {exc}") from None
    paths = {}
    for split, examples in raw.items():
        rows = [r for i, ex in enumerate(examples) if (r := make_row(ex, split, i)) is not None]
        path = os.path.join(os.path.expanduser(args.local_dir), f"{split}.parquet")
        write_parquet(rows, path)
        skipped = len(examples) - len(rows)
        print(f"wrote {len(rows)} rows to {path}" + (f" (skipped {skipped} without an answer)" if skipped else ""))
        paths[split] = path
    return paths
