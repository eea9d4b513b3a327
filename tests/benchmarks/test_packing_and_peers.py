"""The packing benchmark's small variant runs and prints one JSON line; the peer script's pieces that need no TRL
(merging rounds, the quickstart workload's arguments) hold."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packing_benchmark_times_both_variants(capsys):
    record = load("benchmarks/packing.py", "bench_packing").main(
        ["--sequences", "8", "--repeats", "1", "--hidden-size", "32", "--num-layers", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines == [record]
    assert 0.2 < record["valid_token_fraction"] < 1, "the batch is ragged"
    for variant in ("packed", "padded"):
        for phase in ("log_prob", "update"):
            assert record[f"{variant}/{phase}_s"] > 0 and record[f"{variant}/{phase}_cpu_s"] > 0
    assert record["padded_over_packed/update_s"] == pytest.approx(
        record["padded/update_s"] / record["packed/update_s"], rel=0.05)


def test_peer_rounds_merge_into_medians_over_every_timed_step():
    peers = load("benchmarks/peers/trl_grpo.py", "peers_trl")
    runs = [{"steps_s": [1.0, 3.0], "steps_cpu_s": [2.0, 2.0], "warmup_step_s": 9.0, "timing_s/gen": 0.5,
             "timing_s/step": 2.0},
            {"steps_s": [2.0, 10.0], "steps_cpu_s": [4.0, 4.0], "warmup_step_s": 8.0, "timing_s/gen": 1.5,
             "timing_s/step": 6.0}]
    merged = peers.merge_rounds(runs)
    assert merged["steps_s"] == [1.0, 3.0, 2.0, 10.0] and merged["step_s"] == 2.5
    assert merged["step_cpu_s"] == 3.0 and merged["warmup_step_s"] == [9.0, 8.0]
    assert merged["timing_s/gen"] == 1.0 and merged["timing_s/step"] == 2.5


def test_quickstart_workload_matches_the_quickstart_and_excludes_tiny(capsys):
    bench = load("benchmarks/grpo_step.py", "bench_grpo_step_qs")
    args = bench.parse_args(["--quickstart"])
    assert (args.num_prompts, args.n, args.prompt_length, args.response_length, args.mini_batch) == (32, 8, 64, 8, 16)
    overrides = bench.quickstart_overrides(args, {"model": "m", "train": "t", "logs": "l"})
    for expected in ("data.train_batch_size=32", "actor_rollout_ref.rollout.n=8", "data.max_response_length=8",
                     "actor_rollout_ref.actor.ppo_mini_batch_size=16", "actor_rollout_ref.actor.optim.lr=0.0003"):
        assert expected in overrides, expected
    with pytest.raises(SystemExit):
        bench.parse_args(["--tiny", "--quickstart"])
    assert "pick one" in capsys.readouterr().err
