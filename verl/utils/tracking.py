"""Experiment tracking: one :class:`Tracking` object fans each step's metrics out to the chosen backends.

``trainer.logger`` names the backends (verl's keys): ``console`` (one compact line per step, printed through
``tqdm.write`` so a progress bar stays intact), ``file`` (one JSON object per step appended to
``<local_dir>/metrics.jsonl``), ``tensorboard``, ``wandb``, ``mlflow`` and ``swanlab``. The last four are
imported only when asked for, and a missing package is a clear error naming the ``pip install`` to run.

>>> tracker = Tracking("proj", "exp", ["console", "file"], config={"lr": 1e-5}, local_dir="/tmp/run")  # doctest: +SKIP
>>> tracker.log({"train/loss": 1.25, "train/lr": 1e-5}, step=1)   # doctest: +SKIP
>>> tracker.finish()   # doctest: +SKIP

:func:`plot_metrics` draws curves from a ``metrics.jsonl`` into a PNG (matplotlib, Agg backend).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["BACKENDS", "Tracking", "flatten_dict", "format_metrics", "plot_metrics", "read_metrics"]

BACKENDS = ("console", "file", "tensorboard", "wandb", "mlflow", "swanlab")
METRICS_FILE = "metrics.jsonl"


def _scalar(value: Any) -> Any:
    """A plain Python number from a number, a 0-d/1-element tensor or numpy value; anything else unchanged."""
    is_tensor_scalar = hasattr(value, "numel") and value.numel() == 1
    is_numpy_scalar = hasattr(value, "item") and getattr(value, "ndim", None) == 0
    if is_tensor_scalar or is_numpy_scalar:
        return value.item()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def flatten_dict(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists become strings; for backends that take flat params)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_dict(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = str(list(value))
        else:
            out[name] = value
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    if value == 0 or math.isnan(value) or math.isinf(value):
        return f"{value:g}"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}"


def format_metrics(data: Mapping[str, Any], step: int, markup: bool = False) -> str:
    """One readable line: ``step 3 │ train: loss 1.25 lr 1.000e-05 │ val: loss 1.3``.

    Keys are grouped by the part before their first ``/`` (keys without one go under ``-``), groups in
    first-seen order. With ``markup``, group names are bold (rich markup).
    """
    groups: dict[str, list[str]] = {}
    for key, value in data.items():
        group, _, name = key.partition("/") if "/" in key else ("-", "", key)
        groups.setdefault(group, []).append(f"{name} {_fmt(_scalar(value))}")
    parts = [f"step {step}"]
    for group, items in groups.items():
        head = f"[bold]{group}[/bold]" if markup else group
        parts.append(f"{head}: " + " ".join(items))
    return " │ ".join(parts)


class _Console:
    """A line per step, rendered by rich (colours on a terminal) and written with ``tqdm.write``."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)

    def log(self, data: dict[str, Any], step: int) -> None:
        from tqdm import tqdm

        with self.console.capture() as capture:
            self.console.print(format_metrics(data, step, markup=True))
        tqdm.write(capture.get().rstrip("\n"))

    def finish(self) -> None:
        pass


class _File:
    """``<local_dir>/metrics.jsonl``: ``{"step": N, "time": unix seconds, <metrics>}`` per line, flushed each step."""

    def __init__(self, local_dir: str) -> None:
        os.makedirs(local_dir, exist_ok=True)
        self.path = os.path.join(local_dir, METRICS_FILE)
        self.file = open(self.path, "a", encoding="utf-8")

    def log(self, data: dict[str, Any], step: int) -> None:
        record = {"step": step, "time": time.time()}
        record.update({k: _json_value(v) for k, v in data.items()})
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def finish(self) -> None:
        self.file.close()


def _json_value(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable instead of writing invalid JSON
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _import_backend(module: str, backend: str, package: str | None = None):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"trainer.logger asks for {backend!r} but {module!r} cannot be imported ({err}); "
            f"install it with `pip install {package or module}` or drop {backend!r} from trainer.logger"
        ) from err


class _TensorBoard:
    def __init__(self, log_dir: str) -> None:
        _import_backend("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=log_dir)

    def log(self, data: dict[str, Any], step: int) -> None:
        for key, value in data.items():
            value = _scalar(value)
            if isinstance(value, numbers.Real):
                self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def finish(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, project: str, experiment: str, config: dict[str, Any]) -> None:
        self.wandb = _import_backend("wandb", "wandb")
        self.run = self.wandb.init(project=project, name=experiment, config=config)

    def log(self, data: dict[str, Any], step: int) -> None:
        self.wandb.log({k: _scalar(v) for k, v in data.items()}, step=step)

    def finish(self) -> None:
        self.wandb.finish()


class _MLflow:
    def __init__(self, project: str, experiment: str, config: dict[str, Any]) -> None:
        self.mlflow = _import_backend("mlflow", "mlflow")
        self.mlflow.set_experiment(project)
        self.mlflow.start_run(run_name=experiment)
        # MLflow rejects long parameter values (e.g. a chat template); keep the first 500 characters
        params = {k: (v[:500] if isinstance(v, str) else v) for k, v in flatten_dict(config).items()}
        self.mlflow.log_params(params)

    def log(self, data: dict[str, Any], step: int) -> None:
        # MLflow metric names may not contain '@' (pass@k); it allows '/', '-', '.', '_' and spaces
        metrics = {k.replace("@", "_at_"): _scalar(v) for k, v in data.items()}
        self.mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, numbers.Real)}, step=step)

    def finish(self) -> None:
        self.mlflow.end_run()


class _SwanLab:
    def __init__(self, project: str, experiment: str, config: dict[str, Any], log_dir: str) -> None:
        self.swanlab = _import_backend("swanlab", "swanlab")
        self.swanlab.init(project=project, experiment_name=experiment, config=config, logdir=log_dir)

    def log(self, data: dict[str, Any], step: int) -> None:
        self.swanlab.log({k: _scalar(v) for k, v in data.items()}, step=step)

    def finish(self) -> None:
        self.swanlab.finish()


class Tracking:
    """Log metrics to every backend in ``default_backend``.

    Args:
        project_name, experiment_name: run names (W&B project / run name, MLflow experiment / run name, ...).
        default_backend: backend names (a single string is accepted); see :data:`BACKENDS`.
        config: the run's full config as a plain dict (recorded by W&B, MLflow and SwanLab).
        local_dir: where ``file`` writes ``metrics.jsonl`` and ``tensorboard`` its events (``tensorboard/``
            under it, or ``$TENSORBOARD_DIR`` when set); default ``logs/<project>/<experiment>``.

    Raises:
        ValueError: an unknown backend name. ImportError: a backend whose package is missing (with the fix).
    """

    def __init__(self, project_name: str, experiment_name: str, default_backend: str | Sequence[str] = "console",
                 config: Mapping[str, Any] | None = None, local_dir: str | None = None):
        names = [default_backend] if isinstance(default_backend, str) else list(default_backend or [])
        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown trainer.logger backend(s) {unknown}; use any of {list(BACKENDS)}")
        self.project_name, self.experiment_name = project_name, experiment_name
        self.local_dir = local_dir or os.path.join("logs", project_name, experiment_name)
        config = dict(config or {})
        self.backends: dict[str, Any] = {}
        for name in dict.fromkeys(names):  # de-duplicated, order kept
            self.backends[name] = self._make(name, config)

    def _make(self, name: str, config: dict[str, Any]) -> Any:
        if name == "console":
            return _Console()
        if name == "file":
            return _File(self.local_dir)
        if name == "tensorboard":
            return _TensorBoard(os.environ.get("TENSORBOARD_DIR") or os.path.join(self.local_dir, "tensorboard"))
        if name == "wandb":
            return _Wandb(self.project_name, self.experiment_name, config)
        if name == "mlflow":
            return _MLflow(self.project_name, self.experiment_name, config)
        return _SwanLab(self.project_name, self.experiment_name, config, os.path.join(self.local_dir, "swanlab"))

    @property
    def metrics_path(self) -> str | None:
        """The ``metrics.jsonl`` the ``file`` backend writes, or None without that backend."""
        backend = self.backends.get("file")
        return backend.path if backend is not None else None

    def log(self, data: Mapping[str, Any], step: int) -> None:
        """Record ``data`` (metric name -> number) at ``step`` in every backend."""
        data = dict(data)
        for backend in self.backends.values():
            backend.log(data, step)

    def finish(self) -> None:
        """Flush and close every backend (call once at the end of the run)."""
        for backend in self.backends.values():
            backend.finish()
        self.backends = {}

    def __del__(self) -> None:
        file = getattr(self, "backends", {}).get("file")
        if file is not None and not file.file.closed:
            file.file.close()


def read_metrics(jsonl_path: str) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` written by the ``file`` backend, in order."""
    with open(jsonl_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(jsonl_path: str, keys: Iterable[str], out_png: str, title: str | None = None) -> str:
    """Draw one panel per metric in ``keys`` (x = step) from a ``metrics.jsonl`` into ``out_png``.

    Steps where a metric is absent (e.g. validation every ``test_freq`` steps) are skipped for that panel.
    Raises ``KeyError`` naming the keys no record holds. Returns ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(jsonl_path)
    keys = list(keys)
    if not keys:
        raise ValueError("plot_metrics needs at least one metric key")
    present = {k for r in records for k in r}
    missing = [k for k in keys if k not in present]
    if missing:
        available = sorted(present - {"step", "time"})
        raise KeyError(f"{jsonl_path} has no metric(s) {missing}; it has {available}")
    fig, axes = plt.subplots(len(keys), 1, figsize=(6.0, 2.6 * len(keys)), squeeze=False, sharex=True)
    for ax, key in zip(axes[:, 0], keys):
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
