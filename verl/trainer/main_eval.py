"""Offline evaluation: score a parquet of generated responses (e.g. ``main_generation``'s output).

    python -m verl.trainer.main_eval data.path=$HOME/data/gsm8k/test_gen.parquet

Each row needs ``data_source``, ``reward_model.ground_truth`` and a ``responses`` list (the column names are
configurable). Every response is scored with ``default_compute_score`` (picked by ``data_source``) or with
``custom_reward_function.path``/``name``, in worker processes. Per data source it reports
``test_score/{data_source}``, the mean score of all responses, and, when rows have ``n > 1`` responses,
``test_score/{data_source}/pass@k`` for k = 1, 2, 4, ... up to n (the unbiased estimator of Chen et al. 2021,
"Evaluating Large Language Models Trained on Code"; a response passes when its score exceeds
``pass_threshold``). The metrics are printed and written as JSON to ``data.output_path``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from verl.reward.config import CustomRewardFunctionConfig
from verl.utils.config import ConfigError

__all__ = ["EvalConfig", "evaluate_rows", "main", "pass_at_k", "run_eval"]


@dataclass
class EvalDataConfig:
    """``data.*``: the scored file and its columns."""

    path: str = "/tmp/math_Qwen2-7B-Instruct.parquet"
    """Parquet (or JSONL/JSON) file with a list of responses per row."""
    prompt_key: str = "prompt"
    """Column of the prompt (not scored; kept for verl compatibility)."""
    response_key: str = "responses"
    """Column with the list of response strings of each row."""
    data_source_key: str = "data_source"
    """Column naming the data source (chooses the scorer; metrics are grouped by it)."""
    reward_model_key: str = "reward_model"
    """Column with a dict holding ``ground_truth``."""
    output_path: str | None = None
    """Where the metrics JSON is written; default ``<path without extension>_eval.json``."""


@dataclass
class RayInitConfig:
    """``ray_init.*`` (verl's key): how many processes score in parallel."""

    num_cpus: int | None = None
    """Worker processes that run the score function (None: min(8, cores))."""


@dataclass
class EvalConfig:
    """The whole evaluation run."""

    config_names: ClassVar[tuple[str, ...]] = ("evaluation",)  # verl's --config-name for this entry point

    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    """Input file and columns."""
    custom_reward_function: CustomRewardFunctionConfig = field(default_factory=CustomRewardFunctionConfig)
    """A user's score function (``path``, ``name``, ``reward_kwargs``); unset = ``default_compute_score``."""
    ray_init: RayInitConfig = field(default_factory=RayInitConfig)
    """Parallel scoring."""
    pass_threshold: float = 0.5
    """A response counts as correct for pass@k when its score is above this."""
    timeout_s: float = 300.0
    """Longest time one score call may take (the call is then stopped and the evaluation fails)."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` responses drawn without replacement from ``n`` (``c`` of them
    correct) is correct: ``1 - C(n - c, k) / C(n, k)`` (Chen et al. 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _ks(n: int) -> list[int]:
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def _score_value(result: Any) -> float:
    if isinstance(result, dict):
        if "score" not in result:
            raise ValueError(f"a score function returned a dict without 'score': {sorted(result)}")
        result = result["score"]
    return float(result)


def _rows(cfg: EvalConfig) -> list[dict[str, Any]]:
    from verl.data.rl_dataset import read_rows

    d = cfg.data
    rows = read_rows(os.path.expanduser(d.path))
    for r, row in enumerate(rows):
        for key in (d.response_key, d.data_source_key, d.reward_model_key):
            if key not in row:
                raise ValueError(f"{d.path}, row {r}: no column {key!r} (columns: {sorted(row)}); set data.*_key")
        if isinstance(row[d.response_key], str) or not isinstance(row[d.response_key], (list, tuple, np.ndarray)):
            raise ValueError(f"{d.path}, row {r}: {d.response_key!r} must be a list of response strings")
        if not isinstance(row[d.reward_model_key], dict) or "ground_truth" not in row[d.reward_model_key]:
            raise ValueError(f"{d.path}, row {r}: {d.reward_model_key!r} must be a dict with 'ground_truth'")
    return rows


def evaluate_rows(rows: list[dict[str, Any]], cfg: EvalConfig, compute_score: Any = None) -> dict[str, float]:
    """Scores and pass@k per data source (see the module docstring) of rows already read."""
    from verl.reward import get_custom_reward_fn
    from verl.reward.process_pool import run_calls
    from verl.utils.reward_score import default_compute_score

    d = cfg.data
    custom = get_custom_reward_fn({"custom_reward_function": cfg.custom_reward_function})
    fn = compute_score or custom or default_compute_score
    calls, owners = [], []
    for r, row in enumerate(rows):
        for response in row[d.response_key]:
            calls.append(((row[d.data_source_key], response, row[d.reward_model_key]["ground_truth"],
                           row.get("extra_info")), {}))
            owners.append(r)
    outcomes = run_calls(fn, calls, num_workers=cfg.ray_init.num_cpus, timeout_s=cfg.timeout_s)
    per_row: list[list[float]] = [[] for _ in rows]
    for (args, _), owner, outcome in zip(calls, owners, outcomes):
        if outcome.status != "ok":
            raise RuntimeError(f"scoring row {owner} (data_source={args[0]!r}) failed: {outcome.status}: {outcome.error}")
        per_row[owner].append(_score_value(outcome.value))
    by_source: dict[str, list[list[float]]] = {}
    for row, scores in zip(rows, per_row):
        by_source.setdefault(str(row[d.data_source_key]), []).append(scores)
    metrics: dict[str, float] = {}
    for source, groups in by_source.items():
        metrics[f"test_score/{source}"] = float(np.mean([s for g in groups for s in g]))
        n = min(len(g) for g in groups)
        if n > 1:
            for k in _ks(n):
                values = [pass_at_k(len(g), sum(s > cfg.pass_threshold for s in g), k) for g in groups]
                metrics[f"test_score/{source}/pass@{k}"] = float(np.mean(values))
    return metrics


def run_eval(cfg: EvalConfig) -> dict[str, float]:
    """Score ``cfg.data.path``, print the metrics and write them to the output JSON; returns them."""
    metrics = evaluate_rows(_rows(cfg), cfg)
    path = os.path.expanduser(cfg.data.output_path or os.path.splitext(os.path.expanduser(cfg.data.path))[0] + "_eval.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    for key, value in metrics.items():
        print(f"{key}: {value:.4f}")
    print(f"wrote {path}")
    return metrics


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    from verl.utils.cli import parse_cli_config

    try:
        cfg = parse_cli_config(EvalConfig, argv, "python -m verl.trainer.main_eval", __doc__.split("\n\n")[0])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    return run_eval(cfg)


if __name__ == "__main__":
    main()
