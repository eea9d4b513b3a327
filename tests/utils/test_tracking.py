"""Tracking: the console line, the JSONL file, optional backends (lazy imports, clear errors) and plots."""

import json
import sys
import types

import pytest
import torch

from verl.utils.tracking import Tracking, flatten_dict, format_metrics, plot_metrics, read_metrics


def test_file_backend_appends_one_flushed_json_object_per_step(tmp_path):
    tracker = Tracking("proj", "exp", ["file"], config={"lr": 1e-5}, local_dir=str(tmp_path))
    tracker.log({"train/loss": torch.tensor(1.5), "train/lr": 1e-5}, step=1)
    # flushed at once: readable before finish()
    assert read_metrics(str(tmp_path / "metrics.jsonl"))[0]["train/loss"] == 1.5
    tracker.log({"train/loss": 1.25, "val/loss": float("nan")}, step=2)
    tracker.finish()
    records = read_metrics(tracker_path := str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in records] == [1, 2]
    assert records[1]["train/loss"] == 1.25 and records[1]["val/loss"] == "nan"  # valid JSON, NaN kept readable
    assert all(isinstance(r["time"], float) for r in records)
    # a second run appends instead of truncating
    again = Tracking("proj", "exp", "file", local_dir=str(tmp_path))
    again.log({"x": 1}, step=3)
    again.finish()
    assert [json.loads(line)["step"] for line in open(tracker_path)] == [1, 2, 3]


def test_console_prints_one_grouped_line_per_step(capsys):
    tracker = Tracking("proj", "exp", ["console"])
    tracker.log({"train/loss": 1.23456, "train/lr": 1e-5, "val/loss": 2.0, "epoch": 3}, step=7)
    tracker.finish()
    out = capsys.readouterr().out
    assert out.strip() == "step 7 │ train: loss 1.235 lr 1.000e-05 │ val: loss 2 │ -: epoch 3"


def test_format_metrics_markup_and_numbers():
    line = format_metrics({"a/b": 123456.0, "a/c": 0, "d": True}, step=1, markup=True)
    assert line == "step 1 │ [bold]a[/bold]: b 1.235e+05 c 0 │ [bold]-[/bold]: d True"


def test_unknown_and_missing_backends_fail_with_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown trainer.logger backend\(s\) \['wandbb'\]"):
        Tracking("p", "e", ["console", "wandbb"])
    for name in ("wandb", "mlflow", "swanlab", "tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
        with pytest.raises(ImportError, match=rf"pip install {name}"):
            Tracking("p", "e", [name], local_dir=str(tmp_path))


def test_wandb_backend_passes_names_config_and_steps(monkeypatch):
    calls = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(("init", kw))
    fake.log = lambda data, step: calls.append(("log", data, step))
    fake.finish = lambda: calls.append(("finish",))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracker = Tracking("proj", "exp", ["wandb"], config={"a": {"b": 1}})
    tracker.log({"train/loss": torch.tensor(0.5)}, step=4)
    tracker.finish()
    assert calls == [("init", {"project": "proj", "name": "exp", "config": {"a": {"b": 1}}}),
                     ("log", {"train/loss": 0.5}, 4), ("finish",)]


def test_mlflow_backend_flattens_params_and_renames_pass_at_k(monkeypatch):
    calls = []
    fake = types.ModuleType("mlflow")
    fake.set_experiment = lambda name: calls.append(("experiment", name))
    fake.start_run = lambda run_name: calls.append(("run", run_name))
    fake.log_params = lambda params: calls.append(("params", params))
    fake.log_metrics = lambda metrics, step: calls.append(("metrics", metrics, step))
    fake.end_run = lambda: calls.append(("end",))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    tracker = Tracking("proj", "exp", ["mlflow"], config={"trainer": {"logger": ["mlflow"], "seed": 1}})
    tracker.log({"val/pass@4": 0.75, "note": "text"}, step=2)
    tracker.finish()
    assert calls == [("experiment", "proj"), ("run", "exp"),
                     ("params", {"trainer.logger": "['mlflow']", "trainer.seed": 1}),
                     ("metrics", {"val/pass_at_4": 0.75}, 2), ("end",)]


def test_flatten_dict():
    assert flatten_dict({"a": {"b": {"c": 1}}, "d": [1, 2]}) == {"a.b.c": 1, "d": "[1, 2]"}


def test_plot_metrics_writes_a_png_and_names_missing_keys(tmp_path):
    tracker = Tracking("p", "e", ["file"], local_dir=str(tmp_path))
    for step in range(1, 6):
        metrics = {"train/loss": 3.0 / step}
        if step % 2 == 0:
            metrics["val/loss"] = 3.5 / step
        tracker.log(metrics, step)
    tracker.finish()
    out = plot_metrics(str(tmp_path / "metrics.jsonl"), ["train/loss", "val/loss"], str(tmp_path / "plots/loss.png"))
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(KeyError, match=r"no metric\(s\) \['train/acc'\]; it has \['train/loss', 'val/loss'\]"):
        plot_metrics(str(tmp_path / "metrics.jsonl"), ["train/acc"], str(tmp_path / "x.png"))
