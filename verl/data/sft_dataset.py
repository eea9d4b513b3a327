"""SFT data: conversations rendered with the chat template, with a loss mask that is 1 on assistant tokens only.

Two row formats (parquet, JSONL or JSON, as for RL data):

- single-turn (default): a prompt column and a response column (``data.prompt_key`` / ``data.response_key``),
  each optionally a nested dict read through ``data.prompt_dict_keys`` / ``data.response_dict_keys``
  (e.g. GSM8K's ``extra_info.question`` and ``extra_info.answer``). A string prompt becomes one user
  message; a list of chat messages is used as is. The response becomes the assistant message.
- multi-turn (``data.multiturn.enable``): a column of chat messages (``data.multiturn.messages_key``),
  optionally tools (``data.multiturn.tools_key``, a list of OpenAI tool schemas or that list as a JSON string).
  Every assistant message is trained on, tool calls included (``tool_calls`` in OpenAI's format, arguments a dict
  or a JSON string); ``tool`` messages and user turns are not.

The whole conversation is rendered once and tokenised once. An assistant message's tokens are those whose text
lies between the end of the generation prompt before it (``apply_chat_template(messages[:i],
add_generation_prompt=True)``) and the end of the turn (``apply_chat_template(messages[:i+1])``), up to and
including the last EOS token in that stretch: exactly what the model must generate to produce the turn and
stop (ChatML: the content and ``<|im_end|>``, not the newline after it).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from verl.data.config import TRUNCATION_MODES
from verl.data.rl_dataset import read_rows, truncate_ids
from verl.utils.config import ConfigError

__all__ = ["MultiturnConfig", "SFTDataConfig", "SFTDataset", "sft_collate_fn", "tokenize_conversation"]


@dataclass
class MultiturnConfig:
    """``data.multiturn.*``: rows holding whole chat conversations."""

    enable: bool = False
    """Read conversations from ``messages_key`` instead of prompt/response columns."""
    messages_key: str = "messages"
    """Column with the list of ``{"role": ..., "content": ...}`` messages."""
    tools_key: str = "tools"
    """Optional column with the tool schemas passed to the chat template (absent or null: no tools)."""
    enable_thinking_key: str = "enable_thinking"
    """Optional column with a per-row ``enable_thinking`` flag passed to the chat template (absent or null: the
    template's default, or ``data.apply_chat_template_kwargs``)."""


@dataclass
class SFTDataConfig:
    """``data.*`` of the SFT trainer."""

    train_files: str | list[str] | None = None
    """Training parquet (or JSONL/JSON) file(s)."""
    val_files: str | list[str] | None = None
    """Validation file(s); None = no validation loss."""
    prompt_key: str = "question"
    """Column of the prompt (single-turn): a string or a list of chat messages."""
    response_key: str = "answer"
    """Column of the response (single-turn): a string."""
    prompt_dict_keys: list[str] | None = None
    """Keys into a dict-valued prompt column, outermost first (e.g. ``[question]`` for ``extra_info``)."""
    response_dict_keys: list[str] | None = None
    """Keys into a dict-valued response column, outermost first."""
    multiturn: MultiturnConfig = field(default_factory=MultiturnConfig)
    """Multi-turn conversations instead of prompt/response pairs."""
    max_length: int = 1024
    """Longest tokenised conversation; longer ones follow ``truncation``."""
    truncation: str = "error"
    """``error`` (raise, naming the row), ``left`` (keep the end), ``right`` (keep the start) or ``middle``."""
    train_batch_size: int = 256
    """Sequences per optimizer step, globally."""
    micro_batch_size_per_gpu: int = 4
    """Sequences per forward/backward on one rank (also the validation batch); speed and memory only."""
    use_dynamic_bsz: bool = False
    """Pack micro-batches by ``max_token_len_per_gpu`` tokens instead of a fixed number of sequences."""
    max_token_len_per_gpu: int = 8192
    """Token budget of one micro-batch with ``use_dynamic_bsz`` (at least ``max_length``)."""
    chat_template: str | None = None
    """A Jinja chat template replacing the tokenizer's."""
    apply_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``apply_chat_template`` (e.g. ``{enable_thinking: false}``)."""
    shuffle: bool = True
    """Shuffle the training set each epoch (seeded by ``trainer.seed`` and the epoch)."""
    dataloader_num_workers: int = 0
    """Processes that tokenise batches ahead of the trainer (0: in the training process)."""
    micro_batch_size: int | None = None
    """verl's deprecated global micro-batch size: when set, each rank runs ``micro_batch_size / ranks`` samples
    per forward instead of ``micro_batch_size_per_gpu``."""
    train_max_samples: int = -1
    """Use only the first N training rows (-1: all)."""
    val_max_samples: int = -1
    """Use only the first N validation rows (-1: all)."""
    balance_dp_token: bool = False
    """Balance tokens across data-parallel ranks (verl: "to be implemented"; only false)."""
    use_shm: bool = False
    """Copy data files to shared memory first (not available: only false)."""
    custom_cls: dict[str, Any] = field(default_factory=lambda: {"path": None, "name": None})
    """A user dataset class (not available for SFT: ``path`` must stay null)."""

    def micro_batch_per_gpu(self, world_size: int) -> int:
        """Samples per forward on one rank: ``micro_batch_size / ranks`` when verl's global size is set."""
        return max(1, self.micro_batch_size // world_size) if self.micro_batch_size else self.micro_batch_size_per_gpu

    def validate(self) -> SFTDataConfig:
        if self.truncation not in TRUNCATION_MODES:
            raise ConfigError(f"data.truncation={self.truncation!r}: use one of {list(TRUNCATION_MODES)}")
        for key in ("max_length", "train_batch_size", "micro_batch_size_per_gpu", "max_token_len_per_gpu"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}={getattr(self, key)} must be >= 1")
        refused = {"balance_dp_token": (self.balance_dp_token, False), "use_shm": (self.use_shm, False),
                   "custom_cls.path": ((self.custom_cls or {}).get("path"), None)}
        for key, (value, only) in refused.items():
            if value != only:
                raise ConfigError(f"data.{key}={value!r} is not available for SFT (accepted: {only}); remove it")
        if self.use_dynamic_bsz and self.max_token_len_per_gpu < self.max_length:
            raise ConfigError(f"data.max_token_len_per_gpu={self.max_token_len_per_gpu} is below data.max_length="
                              f"{self.max_length}: one sequence would not fit a micro-batch; raise it")
        return self


def _render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool, tools: Any,
            kwargs: Mapping[str, Any]) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=generation_prompt,
                                         tokenize=False, **kwargs)


def _assistant_spans(tokenizer: Any, messages: list[dict[str, Any]], full: str, tools: Any,
                     kwargs: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of ``full`` that each assistant message's turn produces."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i == 0:
            raise ValueError("the conversation starts with an assistant message; it needs a user (or system) turn first")
        head = _render(tokenizer, messages[:i], True, tools, kwargs)
        turn = _render(tokenizer, messages[: i + 1], False, tools, kwargs)
        if not (turn.startswith(head) and full.startswith(turn)):
            raise ValueError(
                f"the chat template is not prefix-stable at message {i}: rendering the conversation up to an "
                "assistant turn does not extend the rendering before it (templates that rewrite earlier turns, "
                "e.g. dropping past reasoning, cannot be masked this way); set data.chat_template to one that is"
            )
        spans.append((len(head), len(turn)))
    return spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None,
                          template_kwargs: Mapping[str, Any] | None = None) -> tuple[list[int], list[int]]:
    """Token ids of ``messages`` rendered with the chat template, and the loss mask (1 on assistant tokens).

    A token belongs to an assistant turn when its text starts inside that turn's span (see the module
    docstring); tokens after the turn's last EOS token (e.g. the newline after ``<|im_end|>``) are not trained.

    Returns:
        ``(ids, mask)``: two lists of the same length ``L``.
    """
    kwargs = dict(template_kwargs or {})
    full = _render(tokenizer, messages, False, tools, kwargs)
    spans = _assistant_spans(tokenizer, messages, full, tools, kwargs)
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("SFT loss masking needs a fast tokenizer (character offsets); load it with use_fast=True")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    eos = getattr(tokenizer, "eos_token_id", None)
    mask = [0] * len(ids)
    for start, end in spans:
        if any(s < start < e for s, e in offsets):
            warnings.warn(
                "a token of the chat template spans the end of the generation prompt and the start of an assistant "
                f"turn ({full[max(0, start - 12):start]!r} + {full[start:start + 12]!r}): training sees it merged, "
                "generation sees the prompt's own tokens first; the turn's first token is not trained. Use a template "
                "whose assistant turn starts where the generation prompt ends", stacklevel=2)
        inside = [k for k, (s, _) in enumerate(offsets) if start <= s < end]
        eos_at = [k for k in inside if ids[k] == eos]
        last = eos_at[-1] if eos_at else (inside[-1] if inside else -1)
        for k in inside:
            if k <= last:
                mask[k] = 1
    return ids, mask


def _dig(value: Any, keys: Sequence[str] | None, where: str) -> Any:
    for key in keys or []:
        if not isinstance(value, Mapping) or key not in value:
            found = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ValueError(f"{where}: cannot read key {key!r} (found {found}); check data.*_dict_keys")
        value = value[key]
    return value


def _as_messages(value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, (np.ndarray, tuple)):
        value = list(value)
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected a non-empty list of chat messages, got {type(value).__name__}")
    messages = []
    for j, msg in enumerate(value):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str):
            raise ValueError(f"{where}, message {j}: expected a dict with a string 'role', got {msg!r:.200}")
        content = msg.get("content")
        if not isinstance(content, str) and not (content is None and msg.get("tool_calls")):
            raise ValueError(f"{where}, message {j}: 'content' must be a string, got {type(content).__name__}")
        message = {k: v for k, v in dict(msg).items() if v is not None or k == "content"}
        if message.get("tool_calls"):
            message["tool_calls"] = [_decoded_call(c, f"{where}, message {j}") for c in message["tool_calls"]]
        messages.append(message)
    return messages


def _decoded_call(call: Any, where: str) -> dict[str, Any]:
    """An OpenAI tool call with its ``arguments`` as a dict (data files usually hold them as a JSON string, which
    the Qwen templates would otherwise render as a quoted string)."""
    if not isinstance(call, Mapping):
        raise ValueError(f"{where}: each tool call must be a dict, got {call!r:.200}")
    call = dict(call)
    fn = dict(call.get("function") or call)
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            fn["arguments"] = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: tool call arguments are not valid JSON ({err.msg})") from None
    return {**call, "function": fn} if "function" in call else fn


def _decoded_tools(value: Any, where: str) -> Any:
    """The tools column: a list of OpenAI tool schemas, possibly stored as one JSON string (null: no tools)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: the tools column is not valid JSON ({err.msg})") from None
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else value


class SFTDataset(Dataset):
    """Tokenised conversations for supervised fine-tuning.

    Args:
        data_files: a path or a list of paths (``.parquet``, ``.jsonl``, ``.json``).
        tokenizer: a fast Hugging Face tokenizer with a chat template (or ``config.chat_template``).
        config: :class:`SFTDataConfig` (or a mapping of its keys).

    Items: ``input_ids``, ``loss_mask`` (1 on assistant tokens), ``attention_mask``, ``position_ids``, each
    ``(L,)`` with ``L <= max_length``; :func:`sft_collate_fn` right-pads them into a batch.
    """

    def __init__(self, data_files: str | Sequence[str], tokenizer: Any, config: SFTDataConfig | Mapping[str, Any]):
        if not isinstance(config, SFTDataConfig):
            from verl.utils.config import from_mapping

            config = from_mapping(SFTDataConfig, config, "data.")
        self.config = config.validate()
        if config.chat_template:
            tokenizer.chat_template = config.chat_template
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat_template; set data.chat_template to a Jinja template")
        self.tokenizer = tokenizer
        files = [data_files] if isinstance(data_files, str) else list(data_files)
        self.rows: list[tuple[list[dict[str, Any]], Any, str, dict | None]] = []  # (messages, tools, where, template)
        for path in files:
            for r, row in enumerate(read_rows(path)):
                self.rows.append(self._conversation(row, f"{path}, row {r}"))

    def _conversation(self, row: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], Any, str, dict | None]:
        cfg = self.config
        if cfg.multiturn.enable:
            key = cfg.multiturn.messages_key
            if key not in row:
                raise ValueError(f"{where}: no column {key!r} (columns: {sorted(row)}); set data.multiturn.messages_key")
            messages = _as_messages(row[key], f"{where}, column {key!r}")
            if not any(m["role"] == "assistant" for m in messages):
                raise ValueError(f"{where}: the conversation has no assistant message to train on")
            thinking = row.get(cfg.multiturn.enable_thinking_key)
            template = None if thinking is None else {"enable_thinking": bool(thinking)}
            return messages, _decoded_tools(row.get(cfg.multiturn.tools_key), where), where, template
        for key in (cfg.prompt_key, cfg.response_key):
            if key not in row:
                raise ValueError(f"{where}: no column {key!r} (columns: {sorted(row)}); set data.prompt_key / "
                                 "data.response_key (or data.multiturn.enable=true for chat conversations)")
        prompt = _dig(row[cfg.prompt_key], cfg.prompt_dict_keys, f"{where}, column {cfg.prompt_key!r}")
        response = _dig(row[cfg.response_key], cfg.response_dict_keys, f"{where}, column {cfg.response_key!r}")
        if not isinstance(response, str):
            raise ValueError(f"{where}: the response must be a string, got {type(response).__name__}; "
                             "set data.response_dict_keys to reach the text")
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = _as_messages(prompt, f"{where}, column {cfg.prompt_key!r}")
        return [*messages, {"role": "assistant", "content": response}], None, where, None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        messages, tools, where, template = self.rows[index]
        cfg = self.config
        kwargs = {**cfg.apply_chat_template_kwargs, **(template or {})}  # a row's enable_thinking wins
        ids, mask = tokenize_conversation(self.tokenizer, messages, tools, kwargs)
        if len(ids) > cfg.max_length:
            if cfg.truncation == "error":
                raise ValueError(f"{where}: the conversation is {len(ids)} tokens, longer than data.max_length="
                                 f"{cfg.max_length}; raise max_length or set data.truncation to left/right/middle")
            ids = truncate_ids(ids, cfg.max_length, cfg.truncation)
            mask = truncate_ids(mask, cfg.max_length, cfg.truncation)
        n = len(ids)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "loss_mask": torch.tensor(mask, dtype=torch.long),
            "attention_mask": torch.ones(n, dtype=torch.long),
            "position_ids": torch.arange(n, dtype=torch.long),
        }


def sft_collate_fn(items: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad items to the longest one: ``(B, T)`` tensors, ``attention_mask``/``loss_mask`` 0 on padding."""
    if not items:
        raise ValueError("sft_collate_fn got an empty batch")
    T = max(int(item["input_ids"].shape[0]) for item in items)
    out = {}
    for key in ("input_ids", "loss_mask", "attention_mask", "position_ids"):
        fill = pad_token_id if key == "input_ids" else 0
        batch = torch.full((len(items), T), fill, dtype=torch.long)  # (B, T)
        for i, item in enumerate(items):
            batch[i, : item[key].shape[0]] = item[key]
        out[key] = batch
    return out
