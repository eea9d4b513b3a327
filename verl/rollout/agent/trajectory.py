"""One multi-turn trajectory's state, the batch built from finished ones, and the metrics read off that batch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from verl.protocol import DataProto

__all__ = ["Trajectory", "assemble", "multi_turn_metrics"]


@dataclass
class Trajectory:
    """A conversation being rolled out. ``response_ids`` holds everything after the prompt: model tokens
    (``response_mask`` 1) and inserted tool/user tokens (0)."""

    row: int
    agent_name: str
    messages: list[dict[str, Any]]
    prompt_ids: list[int]
    tools_kwargs: dict[str, Any] = field(default_factory=dict)
    interaction: Any = None
    interaction_kwargs: dict[str, Any] = field(default_factory=dict)
    interaction_id: str | None = None
    response_ids: list[int] = field(default_factory=list)
    response_mask: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    turn_ids: list[int] = field(default_factory=list)
    """Model tokens of the turn being generated (a turn may span engine calls when the call's length ran out)."""
    turn_complete: bool = False
    assistant_turns: int = 0
    user_turns: int = 0
    tool_calls: int = 0
    tool_failures: Counter = field(default_factory=Counter)
    tool_rewards: list[float] = field(default_factory=list)
    turn_scores: list[float] = field(default_factory=list)
    tool_instances: dict[str, str] = field(default_factory=dict)
    reward_scores: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    tokenization_mismatch: str | None = None

    def append(self, ids: list[int], by_model: bool, log_probs: list[float] | None = None) -> None:
        self.response_ids += ids
        self.response_mask += [int(by_model)] * len(ids)
        self.log_probs += log_probs if log_probs is not None else [0.0] * len(ids)
        if by_model:
            self.turn_ids += ids

    @property
    def num_turns(self) -> int:
        """verl's count: the prompt, every model turn and every tool/user turn."""
        return self.user_turns + self.assistant_turns + 1


def _int_column(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int32)


def _object_column(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def assemble(data: DataProto, trajs: list[Trajectory], response_length: int, pad_id: int,
             with_log_probs: bool) -> DataProto:  # fmt: skip
    """verl's rollout output for finished trajectories: prompts left-padded to the input's width, responses
    right-padded to ``response_length``; ``response_mask`` 1 exactly on model tokens; ``attention_mask`` 1 on every
    real token; the input's non-tensor columns plus ``__num_turns__``, ``reward_scores``, ``turn_scores``,
    ``tool_rewards``, ``tool_call_counts``, ``tool_failure_counts``, ``tokenization_mismatch``, ``stop_reason``."""
    b, p, r = len(trajs), data.batch["input_ids"].shape[1], response_length
    prompts = torch.full((b, p), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((b, p), dtype=torch.long)
    responses = torch.full((b, r), pad_id, dtype=torch.long)
    resp_attn = torch.zeros((b, r), dtype=torch.long)
    resp_mask = torch.zeros((b, r), dtype=torch.long)
    log_probs = torch.zeros((b, r), dtype=torch.float32)
    for i, t in enumerate(trajs):
        n_p, n_r = len(t.prompt_ids), len(t.response_ids)
        prompts[i, p - n_p:] = torch.tensor(t.prompt_ids)
        prompt_mask[i, p - n_p:] = 1
        responses[i, :n_r] = torch.tensor(t.response_ids, dtype=torch.long)
        resp_attn[i, :n_r] = 1
        resp_mask[i, :n_r] = torch.tensor(t.response_mask, dtype=torch.long)
        log_probs[i, :n_r] = torch.tensor(t.log_probs, dtype=torch.float32)
    attention_mask = torch.cat([prompt_mask, resp_attn], dim=-1)  # (B, P + R)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P + R)
    tensors = {"prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], dim=-1),
               "attention_mask": attention_mask, "position_ids": position_ids, "response_mask": resp_mask}
    if with_log_probs:
        tensors["rollout_log_probs"] = log_probs * resp_mask
    out = DataProto.from_dict(tensors, meta_info=dict(data.meta_info))
    out.non_tensor_batch = dict(data.non_tensor_batch)
    out.non_tensor_batch.update({
        "__num_turns__": _int_column([t.num_turns for t in trajs]),
        "reward_scores": _object_column([dict(t.reward_scores) for t in trajs]),
        "turn_scores": _object_column([list(t.turn_scores) for t in trajs]),
        "tool_rewards": _object_column([list(t.tool_rewards) for t in trajs]),
        "tool_call_counts": _int_column([t.tool_calls for t in trajs]),
        "tool_failure_counts": _int_column([sum(t.tool_failures.values()) for t in trajs]),
        "tokenization_mismatch": _int_column([t.tokenization_mismatch is not None for t in trajs]),
        "stop_reason": _object_column([t.stop_reason or "" for t in trajs]),
    })
    out.check_consistency()
    return out


def multi_turn_metrics(non_tensor_batch: dict[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    """``num_turns/{min,max,mean}``, ``tool_call_counts/{min,max,mean}`` (verl's names) and
    ``multi_turn/{tool_failures, tool_failure_rate, tokenization_mismatch}`` from a multi-turn batch's columns;
    ``{}`` for a batch without them."""
    if "__num_turns__" not in non_tensor_batch:
        return {}
    metrics: dict[str, float] = {}
    for key, name in (("__num_turns__", "num_turns"), ("tool_call_counts", "tool_call_counts")):
        if key in non_tensor_batch:
            values = np.asarray(non_tensor_batch[key], dtype=np.float64)
            metrics.update({f"{prefix}{name}/min": float(values.min()), f"{prefix}{name}/max": float(values.max()),
                            f"{prefix}{name}/mean": float(values.mean())})
    if "tool_failure_counts" in non_tensor_batch:
        failures = float(np.asarray(non_tensor_batch["tool_failure_counts"], dtype=np.float64).sum())
        calls = float(np.asarray(non_tensor_batch.get("tool_call_counts", [0]), dtype=np.float64).sum())
        metrics[f"{prefix}multi_turn/tool_failures"] = failures
        metrics[f"{prefix}multi_turn/tool_failure_rate"] = failures / calls if calls else 0.0
    if "tokenization_mismatch" in non_tensor_batch:
        metrics[f"{prefix}multi_turn/tokenization_mismatch"] = float(
            np.asarray(non_tensor_batch["tokenization_mismatch"], dtype=np.float64).sum())
    return metrics
