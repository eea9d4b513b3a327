"""docs/workers/fsdp_workers.md and docs/perf/tuning.md stay runnable: their examples run as written and print
what the pages show; the benchmark command lines they give parse."""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_page_example(page: str, tmp_path) -> None:
    text = (ROOT / page).read_text()
    script = re.findall(r"```python\n(.*?)```", text, re.S)[-1]
    expected = re.search(r"It prints[^\n]*:\n\n```text\n(.*?)```", text, re.S).group(1)
    (tmp_path / "example.py").write_text(script)
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == expected


def test_fsdp_workers_page_example_runs_one_policy_step_on_two_ranks(tmp_path):
    pytest.importorskip("ray")
    run_page_example("docs/workers/fsdp_workers.md", tmp_path)


def test_tuning_page_example_prints_the_micro_batch_plan(tmp_path):
    run_page_example("docs/perf/tuning.md", tmp_path)


def test_tuning_page_benchmark_commands_use_existing_flags():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines = re.findall(r"^python benchmarks/train\.py(.*?)(?:#.*)?$", (ROOT / "docs/perf/tuning.md").read_text(), re.M)
    assert len(lines) >= 5
    for line in lines:
        bench.parse_args(shlex.split(line))  # an unknown flag exits with an argparse error
