"""The grpo_step benchmark's tiny variant runs two GRPO steps through run_ppo and prints one JSON line."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("gen", "reward", "old_log_prob", "adv", "update_actor")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_grpo_step", ROOT / "benchmarks" / "grpo_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_grpo_step_prints_one_json_line_with_phase_times(capsys, tmp_path):
    pytest.importorskip("ray")
    record = load_bench().main(["--tiny", "--workdir", str(tmp_path)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines == [record]
    assert record["benchmark"] == "grpo_step_tiny" and "CPU" in record["device"]
    assert record["completion_tokens"] == 8 * 4 * 16, "ignore_eos: every response is exactly response_length long"
    assert record["completion_tokens_per_s"] == pytest.approx(record["completion_tokens"] / record["step_s"], rel=1e-2)
    assert record["timing_s/step"] == pytest.approx(record["step_s"], abs=1e-3)
    for phase in PHASES:
        assert record[f"timing_s/{phase}"] > 0, phase
    assert sum(record[f"timing_s/{p}"] for p in PHASES) <= record["step_s"] * 1.01, "phases are parts of the step"
    assert "timing_s/ref" not in record and "timing_s/values" not in record, "GRPO without KL: no reference, no critic"
    assert record["timing_s/weight_sync"] > 0, "the reported step synced the updated weights into the rollout engine"
    assert record["warmup_step_s"] > 0 and record["mfu_actor"] is None  # no known peak on CPU: no made-up MFU
    rows = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[-1]["actor/grad_norm"] > 0, "a real update ran"


def test_prompts_are_exactly_the_requested_length():
    from verl.utils.tiny_model import build_tiny_tokenizer

    bench = load_bench()
    tokenizer = build_tiny_tokenizer()
    rows = bench.prompt_messages(tokenizer, 40, 3)
    assert len(rows) == 3 and len({r[0]["content"] for r in rows}) == 3
    for messages in rows:
        assert len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)) == 40
    with pytest.raises(ValueError, match="shorter than the chat template"):
        bench.prompt_messages(tokenizer, 5, 1)


def test_bad_sizes_are_refused(capsys):
    with pytest.raises(SystemExit):
        load_bench().parse_args(["--tiny", "--num-prompts", "6"])
    assert "multiple of --mini-batch" in capsys.readouterr().err
