"""`import verl.rollout` stays light; the rollout benchmark's tiny variant runs and reports both backends."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rollout_and_models_import_without_transformers_or_ray():
    code = ("import sys, verl.rollout, verl.models, verl.rollout.native; "
            "print(sorted(m for m in ('transformers', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tiny_rollout_benchmark_prints_one_json_line_per_backend(capsys):
    spec = importlib.util.spec_from_file_location("bench_rollout", ROOT / "benchmarks" / "rollout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    records = module.main(["--tiny"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    has_vllm = importlib.util.find_spec("vllm") is not None
    assert lines == records and [r["backend"] for r in lines] == ["hf", "native"] + ["vllm"] * has_vllm
    for r in lines:
        assert r["benchmark"] == "rollout_tiny" and r["num_sequences"] == 32
        assert r["generated_tokens"] == 32 * 32  # EOS ignored: every response is full length
        assert r["tokens_per_s"] > 0 and "CPU" in r["device"]
    assert lines[1]["engine"] == "NativeRollout" and lines[1]["speedup_vs_hf"] > 0
    if has_vllm:
        assert lines[2]["engine"] == "VLLMRollout" and lines[1]["speedup_vs_vllm"] > 0
