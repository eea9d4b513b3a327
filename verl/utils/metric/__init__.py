"""verl's ``verl.utils.metric``: reducing lists of per-micro-batch metrics to one number each."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["reduce_metrics"]


def reduce_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Reduce each list in ``metrics`` in place and return it: the max for keys containing ``"max"``, the min
    for keys containing ``"min"``, else the mean (verl's rule, names and all)."""
    for key, values in metrics.items():
        reduce = np.max if "max" in key else np.min if "min" in key else np.mean
        metrics[key] = reduce(values)
    return metrics
