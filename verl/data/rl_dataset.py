"""RLHFDataset: prompts from parquet/JSON rows, chat-templated, tokenised and left-padded for rollout.

Row format (what the preprocessors in :mod:`verl.data.preprocess` write)::

    {"data_source": "openai/gsm8k",
     "prompt": [{"role": "user", "content": "..."}],         # data.prompt_key
     "ability": "math",
     "reward_model": {"style": "rule", "ground_truth": "72"},
     "extra_info": {"split": "train", "index": 0, ...}}

Each item: ``input_ids``, ``attention_mask``, ``position_ids`` (``[max_prompt_length]`` tensors, left-padded),
``raw_prompt_ids`` (the unpadded ids), ``index``, ``tools_kwargs``, ``interaction_kwargs``, every other column
of the row as is, plus ``raw_prompt`` (the messages) with ``data.return_raw_chat`` and ``full_prompts`` (the
templated text) with ``data.return_full_prompt``. :func:`collate_fn` batches items so that
``DataProto.from_single_dict(collate_fn(items))`` works.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from verl.data.config import DataConfig
from verl.protocol import to_object_array

__all__ = ["RLHFDataset", "collate_fn", "create_rl_dataset", "read_rows", "truncate_ids"]

logger = logging.getLogger(__name__)


def read_rows(path: str) -> list[dict[str, Any]]:
    """All rows of a ``.parquet``, ``.jsonl`` or ``.json`` (a list of objects) file as dicts."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"data file {path!r} does not exist; create it with a preprocessor, e.g. "
            "python -m verl.data.preprocess.gsm8k --local_dir ~/data/gsm8k"
        )
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json data file must hold a list of row objects")
        return rows
    raise ValueError(f"data file {path!r}: unsupported format; use .parquet, .jsonl or .json")


def truncate_ids(ids: list[int], max_length: int, mode: str) -> list[int]:
    """Cut ``ids`` to ``max_length``: ``left`` keeps the end, ``right`` the start, ``middle`` both ends
    (the first ``max_length // 2`` and the last ``max_length - max_length // 2``)."""
    if len(ids) <= max_length:
        return ids
    if mode == "left":
        return ids[-max_length:]
    if mode == "right":
        return ids[:max_length]
    if mode == "middle":
        head = max_length // 2
        tail = max_length - head
        return ids[:head] + (ids[-tail:] if tail else [])
    raise ValueError(f"truncation mode {mode!r} cannot shorten a prompt; use left, right or middle")


def _check_messages(value: Any, where: str) -> list[dict[str, Any]]:
    """The prompt as a list of message dicts, or a ValueError naming ``where`` (file, row, column)."""
    if isinstance(value, (np.ndarray, tuple)):
        value = list(value)
    if not isinstance(value, list) or not value:
        raise ValueError(
            f"{where}: expected a non-empty list of chat messages [{{'role': 'user', 'content': '...'}}], "
            f"got {type(value).__name__}"
        )
    for j, msg in enumerate(value):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str):
            raise ValueError(f"{where}, message {j}: expected a dict with a string 'role', got {msg!r:.200}")
        if not isinstance(msg.get("content"), str):
            raise ValueError(
                f"{where}, message {j}: 'content' must be a string, got {type(msg.get('content')).__name__} "
                "(multimodal content is not supported)"
            )
    return [dict(m) for m in value]


_OPTIONAL_TYPES = {"reward_model": dict, "extra_info": dict, "data_source": str}


class RLHFDataset(Dataset):
    """Prompts for RL rollouts, read from one or more parquet/JSON files.

    Args:
        data_files: a path or a list of paths (``.parquet``, ``.jsonl``, ``.json``).
        tokenizer: a Hugging Face tokenizer with a chat template.
        config: :class:`DataConfig` (or a mapping / OmegaConf node with ``data.*`` keys).
        processor: multimodal processor; not supported (must be ``None``).
        max_samples: keep only the first N rows (after filtering); -1 keeps all.

    Every prompt the dataset will serve is measured when it is built (:mod:`verl.data.prompt_lengths`: batched,
    with a progress bar on large files, cached per file and tokenizer), so problems surface before training:

    Raises:
        ValueError: a row whose prompt or a known column has the wrong type (naming file, row and column);
            with ``truncation="error"``, a prompt longer than ``max_prompt_length`` (naming file and row, at
            construction; ``filter_overlong_prompts`` drops such rows instead).
    """

    def __init__(self, data_files: str | Sequence[str], tokenizer: Any, config: Any = None, processor: Any = None,
                 max_samples: int = -1):  # fmt: skip
        if processor is not None:
            raise NotImplementedError("RLHFDataset handles text prompts only; multimodal processors are not supported")
        self.config = DataConfig.from_any(config)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat_template; RLHFDataset renders prompts with apply_chat_template")
        self.tokenizer = tokenizer
        self.data_files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
        self.data_files = [os.fspath(f) for f in self.data_files]
        self.rows: list[dict[str, Any]] = []
        self.origins: list[tuple[str, int]] = []  # (file, row number in that file) of each row, for errors
        self._file_spans: list[tuple[str, int, int]] = []  # (file, first row index here, number of rows)
        for path in self.data_files:
            first = len(self.rows)
            self._load(path)
            self._file_spans.append((path, first, len(self.rows) - first))
        limit = max_samples if max_samples is not None and max_samples > 0 else None
        self.prompt_lengths = self._measure(None if self.config.filter_overlong_prompts else limit)
        if self.config.filter_overlong_prompts:
            self._filter_overlong()
        if limit is not None:
            self.rows, self.origins = self.rows[:limit], self.origins[:limit]
            self.prompt_lengths = self.prompt_lengths[:limit]
        if self.config.truncation == "error":
            self._check_lengths()

    def _load(self, path: str) -> None:
        rows = read_rows(path)
        key = self.config.prompt_key
        if rows and key not in rows[0]:
            raise ValueError(
                f"{path}: no column {key!r} (columns: {sorted(rows[0])}); set data.prompt_key to the prompt column"
            )
        for r, row in enumerate(rows):
            where = f"{path}, row {r}, column {key!r}"
            if key not in row:
                raise ValueError(f"{where}: missing")
            row[key] = _check_messages(row[key], where)
            for column, kind in _OPTIONAL_TYPES.items():
                if row.get(column) is not None and not isinstance(row[column], kind):
                    raise ValueError(
                        f"{path}, row {r}, column {column!r}: expected {kind.__name__}, got {type(row[column]).__name__}"
                    )
            if row.get(self.config.image_key) is not None:
                raise ValueError(f"{path}, row {r}, column {self.config.image_key!r}: images are not supported")
            self.rows.append(row)
            self.origins.append((path, r))

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **self.config.apply_chat_template_kwargs
        )

    def _measure(self, limit: int | None) -> np.ndarray:
        """Token counts of the templated prompts of the first ``limit`` rows (all when ``None``); whole files are
        measured through the cache, a file only partly used is measured in part."""
        from verl.data.prompt_lengths import file_prompt_lengths, measure_prompt_lengths

        key = self.config.prompt_key
        extra = {"chat_template_kwargs": self.config.apply_chat_template_kwargs}
        needed = len(self.rows) if limit is None else min(limit, len(self.rows))
        parts = []
        for path, first, count in self._file_spans:
            take = max(0, min(count, needed - first))
            if take == 0:
                continue
            rows = self.rows[first : first + count]
            if take == count:
                parts.append(file_prompt_lengths(path, rows, self._render, self.tokenizer, key, extra))
            else:
                parts.append(measure_prompt_lengths(rows[:take], self._render, self.tokenizer, key,
                                                    os.path.basename(path)))
        lengths = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return np.concatenate([lengths, np.full(len(self.rows) - len(lengths), -1, dtype=np.int64)])

    def _filter_overlong(self) -> None:
        keep = np.flatnonzero(self.prompt_lengths <= self.config.max_prompt_length).tolist()
        dropped = len(self.rows) - len(keep)
        if dropped:
            logger.warning("data.filter_overlong_prompts: dropped %d of %d prompts longer than "
                           "data.max_prompt_length=%d tokens (%s)", dropped, len(self.rows),
                           self.config.max_prompt_length, ", ".join(self.data_files))  # fmt: skip
        self.rows = [self.rows[i] for i in keep]
        self.origins = [self.origins[i] for i in keep]
        self.prompt_lengths = self.prompt_lengths[keep]

    def _check_lengths(self) -> None:
        """With ``truncation=error``: fail now, naming the first prompt too long for ``max_prompt_length``."""
        max_len = self.config.max_prompt_length
        over = np.flatnonzero(self.prompt_lengths > max_len)
        if not len(over):
            return
        path, r = self.origins[int(over[0])]
        raise ValueError(
            f"{path}, row {r}: prompt is {int(self.prompt_lengths[over[0]])} tokens, longer than "
            f"data.max_prompt_length={max_len} ({len(over)} of {len(self.rows)} prompts are, the longest "
            f"{int(self.prompt_lengths.max())} tokens); raise max_prompt_length, set data.truncation to "
            "left/right/middle, or data.filter_overlong_prompts=true"
        )

    def __len__(self) -> int:
        return len(self.rows)

    def _prompt_ids(self, index: int, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        max_len = self.config.max_prompt_length
        if len(ids) > max_len and self.config.truncation == "error":
            path, r = self.origins[index]
            raise ValueError(
                f"{path}, row {r}: prompt is {len(ids)} tokens, longer than data.max_prompt_length={max_len}; "
                "raise max_prompt_length, set data.truncation to left/right/middle, or data.filter_overlong_prompts=True"
            )
        return truncate_ids(ids, max_len, self.config.truncation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        cfg = self.config
        row = dict(self.rows[index])
        messages = row.pop(cfg.prompt_key)
        text = self._render(messages)
        ids = self._prompt_ids(index, text)
        pad = cfg.max_prompt_length - len(ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([pad_id] * pad + ids, dtype=torch.long)  # (P,)
        attention_mask = torch.tensor([0] * pad + [1] * len(ids), dtype=torch.long)  # (P,)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (P,) 0 on the left padding
        extra = row.get("extra_info") or {}
        row.update(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            raw_prompt_ids=ids,
            index=extra.get("index", index),
            tools_kwargs=extra.get("tools_kwargs") or {},
            interaction_kwargs=extra.get("interaction_kwargs") or {},
        )
        if cfg.return_raw_chat:
            row["raw_prompt"] = messages
        if cfg.return_full_prompt:
            row["full_prompts"] = text
        return row


def collate_fn(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensors (``[B, ...]``) and turn every other field into a 1-D numpy object array of length ``B``.

    A field missing from some items is ``None`` there (rows from files with different columns).
    """
    if not items:
        raise ValueError("collate_fn got an empty batch")
    keys: dict[str, None] = {}
    for item in items:
        keys.update(dict.fromkeys(item))
    out: dict[str, Any] = {}
    for key in keys:
        values = [item.get(key) for item in items]
        if all(isinstance(v, torch.Tensor) for v in values):
            out[key] = torch.stack(values)
        else:
            out[key] = to_object_array(values)
    return out


def create_rl_dataset(data_files: str | Sequence[str], data_config: Any, tokenizer: Any, processor: Any = None,
                      is_train: bool = True) -> Dataset:  # fmt: skip
    """The dataset of ``data_files``: :class:`RLHFDataset`, or ``data.custom_cls`` when set.

    ``data.train_max_samples`` / ``data.val_max_samples`` limit the rows (per ``is_train``).
    """
    cfg = DataConfig.from_any(data_config)
    max_samples = cfg.train_max_samples if is_train else cfg.val_max_samples
    cls: Any = RLHFDataset
    if cfg.custom_cls.path:
        cls = _load_class(cfg.custom_cls.path, cfg.custom_cls.name)
        if not issubclass(cls, Dataset):
            raise TypeError(f"data.custom_cls {cfg.custom_cls.name!r} must subclass torch.utils.data.Dataset")
        return cls(data_files, tokenizer, cfg, processor)
    return cls(data_files, tokenizer, cfg, processor, max_samples=max_samples)


def _load_class(path: str, name: str | None) -> type:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data.custom_cls.path={path!r} does not exist")
    spec = importlib.util.spec_from_file_location("verl_custom_dataset", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    if not name or not hasattr(module, name):
        raise AttributeError(f"data.custom_cls.name={name!r} is not defined in {path}")
    return getattr(module, name)
