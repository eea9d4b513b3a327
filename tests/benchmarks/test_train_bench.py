"""The train benchmark's tiny variant runs both paths on the same tokens and prints one JSON line each."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_train_benchmark_prints_one_json_line_per_path(capsys):
    if dist.is_initialized():
        pytest.skip("needs to create its own one-rank torch.distributed world")
    records = load_bench().main(["--tiny"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines == records and [r["path"] for r in lines] == ["transformers", "verl"]
    for r in lines:
        assert r["benchmark"] == "train_tiny" and "CPU" in r["device"]
        assert r["tokens"] == 16 * (16 + 32) and r["optimizer_steps"] == 2
        assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["seconds"], rel=1e-2) and r["tokens_per_s"] > 0
        assert r["mfu"] is None  # no known peak on CPU: no made-up MFU
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0  # backward really ran
    assert lines[0]["params"] == lines[1]["params"] > 0  # the same model on both paths
    assert lines[1]["fsdp2"] is True and lines[1]["packed"] is True and lines[1]["speedup_vs_transformers"] > 0
    assert not dist.is_initialized(), "the benchmark tears down the world it created"


def test_batch_sizes_that_do_not_divide_are_refused(capsys):
    with pytest.raises(SystemExit):
        load_bench().parse_args(["--tiny", "--num-sequences", "12"])
    assert "multiple of --mini-batch" in capsys.readouterr().err
