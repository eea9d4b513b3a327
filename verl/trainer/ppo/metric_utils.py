"""The trainer's metrics, with verl's names: data statistics, timing, throughput and validation."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from verl.protocol import DataProto

__all__ = [
    "bootstrap_metric",
    "calc_maj_val",
    "compute_data_metrics",
    "compute_throughout_metrics",
    "compute_throughput_metrics",
    "compute_timing_metrics",
    "process_validation_metrics",
]


def _stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {}
    values = values.float()
    return {f"{prefix}/mean": values.mean().item(), f"{prefix}/max": values.max().item(), f"{prefix}/min": values.min().item()}


def compute_data_metrics(batch: DataProto, use_critic: bool) -> dict[str, float]:
    """``critic/score/*``, ``critic/rewards/*``, ``critic/advantages/*``, ``critic/returns/*``,
    ``critic/values/*``, ``critic/vf_explained_var``, ``response_length/*`` and ``prompt_length/*``."""
    b = batch.batch
    R = b["responses"].shape[-1]
    response_mask = b["response_mask"].bool()
    prompt_length = b["attention_mask"][:, :-R].sum(-1).float()
    response_length = b["attention_mask"][:, -R:].sum(-1).float()
    metrics = {
        **_stats("critic/score", b["token_level_scores"].sum(-1)),
        **_stats("critic/rewards", b["token_level_rewards"].sum(-1)),
        **_stats("critic/advantages", b["advantages"][response_mask]),
        **_stats("critic/returns", b["returns"][response_mask]),
        **_stats("response_length", response_length),
        "response_length/clip_ratio": (response_length == R).float().mean().item(),
        **_stats("prompt_length", prompt_length),
        "prompt_length/clip_ratio": (prompt_length == b["attention_mask"].shape[-1] - R).float().mean().item(),
    }
    if use_critic and "values" in b:
        values, returns = b["values"][response_mask], b["returns"][response_mask]
        metrics.update(_stats("critic/values", values))
        var_returns = torch.var(returns)
        metrics["critic/vf_explained_var"] = (1.0 - torch.var(returns - values) / (var_returns + 1e-5)).item()
    return metrics


def compute_rollout_probs_diff_metrics(batch: DataProto) -> dict[str, float]:
    """How far the rollout engine's token probabilities are from the actor's recomputed ones (verl's
    ``training/rollout_probs_diff_*``): ``|exp(rollout_log_probs) - exp(old_log_probs)|`` over response tokens.
    Empty when the rollout returned no log-probs (``rollout.calculate_log_probs=false``)."""
    b = batch.batch
    if "rollout_log_probs" not in b or "old_log_probs" not in b:
        return {}
    mask = b["response_mask"].bool()
    diff = (b["rollout_log_probs"].float().exp() - b["old_log_probs"].float().exp()).abs()[mask]  # (N,)
    if diff.numel() == 0:
        return {}
    return {"training/rollout_probs_diff_max": diff.max().item(), "training/rollout_probs_diff_mean": diff.mean().item(),
            "training/rollout_probs_diff_std": diff.std(unbiased=False).item()}


def compute_timing_metrics(batch: DataProto, timing: dict[str, float]) -> dict[str, float]:
    """``timing_s/<phase>`` and ``timing_per_token_ms/<phase>`` (per token the phase processed)."""
    R = batch.batch["responses"].shape[-1]
    n_response = batch.batch["attention_mask"][:, -R:].sum().item()
    n_all = batch.batch["attention_mask"].sum().item()
    per_phase_tokens = {"gen": n_response, "reward": n_all}
    out = {f"timing_s/{name}": seconds for name, seconds in timing.items()}
    for name, seconds in timing.items():
        if name == "step":
            continue
        tokens = per_phase_tokens.get(name, n_all)
        out[f"timing_per_token_ms/{name}"] = 1000.0 * seconds / max(tokens, 1)
    return out


def compute_throughput_metrics(batch: DataProto, timing: dict[str, float], n_workers: int) -> dict[str, float]:
    """``perf/total_num_tokens``, ``perf/time_per_step``, ``perf/throughput`` (tokens / s / worker)."""
    total = batch.batch["attention_mask"].sum().item()
    step = timing.get("step", 0.0)
    return {
        "perf/total_num_tokens": float(total),
        "perf/time_per_step": step,
        "perf/throughput": total / max(step, 1e-9) / max(n_workers, 1),
    }


def process_validation_metrics(data_sources: Sequence[str], uids: Sequence[str], scores: Sequence[float],
                               preds: Sequence[str] | None = None) -> dict[str, float]:
    """``val-core/<source>/reward/mean@N``; with ``N > 1`` also ``best@N``, ``worst@N`` and, when
    predictions are known, ``maj@N`` (the score of the most common prediction of a prompt)."""
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (src, uid) in enumerate(zip(data_sources, uids)):
        groups[src][uid].append(i)
    scores_arr = np.asarray(scores, dtype=np.float64)
    metrics = {}
    for src, prompts in groups.items():
        n = max(len(idx) for idx in prompts.values())
        per_prompt = [scores_arr[idx] for idx in prompts.values()]
        metrics[f"val-core/{src}/reward/mean@{n}"] = float(np.mean([s.mean() for s in per_prompt]))
        if n > 1:
            metrics[f"val-core/{src}/reward/best@{n}"] = float(np.mean([s.max() for s in per_prompt]))
            metrics[f"val-core/{src}/reward/worst@{n}"] = float(np.mean([s.min() for s in per_prompt]))
            if preds is not None:
                maj = []
                for idx in prompts.values():
                    top, _ = Counter(preds[i] for i in idx).most_common(1)[0]
                    maj.append(float(np.mean([scores_arr[i] for i in idx if preds[i] == top])))
                metrics[f"val-core/{src}/reward/maj@{n}"] = float(np.mean(maj))
    return metrics


#: verl's (misspelled) name for :func:`compute_throughput_metrics`.
compute_throughout_metrics = compute_throughput_metrics


def bootstrap_metric(data: Sequence[Any], subset_size: int, reduce_fns: Sequence[Callable[[np.ndarray], float]],
                     n_bootstrap: int = 1000, seed: int = 42) -> list[tuple[float, float]]:  # fmt: skip
    """``[(mean, std)]`` of each ``reduce_fn`` over ``n_bootstrap`` resamples (with replacement) of
    ``subset_size`` items; the same numbers as verl for the same ``seed`` (it seeds numpy's global RNG, as verl)."""
    np.random.seed(seed)
    items = np.array(data, dtype=object)
    idx = np.random.choice(len(items), size=(n_bootstrap, subset_size), replace=True)  # (n_bootstrap, subset)
    out = []
    for fn in reduce_fns:
        values = np.array([fn(items[row]) for row in idx], dtype=np.float64)
        out.append((float(values.mean()), float(values.std())))
    return out


def calc_maj_val(data: Sequence[dict[str, Any]], vote_key: str, val_key: str) -> Any:
    """The ``val_key`` of the first item whose ``vote_key`` is the most common one (ties: first seen)."""
    votes: dict[Any, list[Any]] = defaultdict(list)
    for item in data:
        votes[item[vote_key]].append(item[val_key])
    winner = max(votes, key=lambda v: len(votes[v]))
    return votes[winner][0]
