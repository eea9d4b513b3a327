"""Driver-side batch operations of the fit loop: load balancing, DAPO group filtering, rollout dumps."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import torch

from verl.protocol import DataProto
from verl.utils.seqlen_balancing import greedy_partition

__all__ = ["balanced_order", "dump_generations", "filter_zero_variance_groups", "sequence_metric"]


def balanced_order(seq_lengths: list[int], n_ranks: int) -> list[int]:
    """A permutation of the batch whose ``n_ranks`` contiguous equal-size chunks have near-equal token sums
    (the data-parallel ranks' loads), from :func:`verl.utils.seqlen_balancing.greedy_partition`."""
    if len(seq_lengths) % n_ranks:
        return list(range(len(seq_lengths)))  # uneven batches are padded by the dispatch; keep their order
    return [i for g in greedy_partition(seq_lengths, n_ranks, equal_size=True) for i in g]


def sequence_metric(batch: DataProto, metric: str, extra_info: dict[str, list]) -> np.ndarray:
    """Per-sequence values DAPO's dynamic sampling compares within a group."""
    if metric == "seq_final_reward":
        return batch.batch["token_level_rewards"].sum(-1).numpy() if "token_level_rewards" in batch.batch else \
            batch.batch["token_level_scores"].sum(-1).numpy()
    if metric in ("seq_reward", "score"):
        return batch.batch["token_level_scores"].sum(-1).numpy()
    if metric in extra_info:
        return np.asarray(extra_info[metric], dtype=np.float64)
    raise KeyError(f"algorithm.filter_groups.metric={metric!r} is neither seq_final_reward/seq_reward/score nor a "
                   f"reward extra-info column ({sorted(extra_info)})")


def filter_zero_variance_groups(batch: DataProto, values: np.ndarray) -> tuple[DataProto, int, int]:
    """Keep the prompt groups (by ``uid``) whose responses differ in ``values``; returns the kept batch and
    the counts of kept and dropped groups."""
    by_uid: dict[str, list[int]] = defaultdict(list)
    for i, uid in enumerate(batch.non_tensor_batch["uid"]):
        by_uid[uid].append(i)
    keep = [idx for idx in by_uid.values() if len(idx) > 1 and np.std(values[idx]) > 0]
    kept_rows = sorted(i for idx in keep for i in idx)
    return batch[np.asarray(kept_rows, dtype=np.int64)], len(keep), len(by_uid) - len(keep)


def generation_rows(step: int | str, tokenizer, batch: DataProto, scores: torch.Tensor) -> list[dict]:
    """One dict per sample: step, decoded prompt (``input``) and response (``output``), score, data source."""
    R = batch.batch["responses"].shape[-1]
    mask = batch.batch["attention_mask"]
    rows = []
    for i in range(len(batch)):
        prompt = batch.batch["input_ids"][i, :-R][mask[i, :-R].bool()]
        response = batch.batch["responses"][i][mask[i, -R:].bool()]
        row = {
            "step": step,
            "input": tokenizer.decode(prompt, skip_special_tokens=True),
            "output": tokenizer.decode(response, skip_special_tokens=True),
            "score": float(scores[i]),
        }
        if "data_source" in batch.non_tensor_batch:
            row["data_source"] = str(batch.non_tensor_batch["data_source"][i])
        rows.append(row)
    return rows


def dump_generations(path: str, step: int, tokenizer, batch: DataProto, scores: torch.Tensor) -> None:
    """Append one JSON line per sample (prompt, response, score) to ``<path>/<step>.jsonl``."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, f"{step}.jsonl"), "a") as f:
        for row in generation_rows(step, tokenizer, batch, scores):
            f.write(json.dumps(row) + "\n")
