"""Peer comparison: TRL's ``GRPOTrainer`` and our ``grpo_step`` on the same model, data and batch, in one run.

Workload: the GRPO phase of ``make quickstart`` (``benchmarks/grpo_step.py --quickstart``): the quickstart's
Qwen2-shaped model (hidden 128, 2 layers, randomly initialised, built offline with the test tokenizer), its
arithmetic task (chat prompts, GSM8K rule reward), 32 prompts x 8 samples per step, responses of at most 8
tokens at temperature 1, two optimizer steps of 16 prompts per batch, AdamW at lr 3e-4, no KL term, fp32 on CPU.

TRL gets the same: ``num_generations=8``, ``per_device_train_batch_size=128`` completions (16 prompts) per
optimizer step, ``steps_per_generation=2`` (one generation of 32 prompts feeds two optimizer steps), ``beta=0``,
``loss_type="dapo"`` (token-mean, as ours), transformers generation (no vLLM). A GRPO step of TRL is the wall time
of two optimizer steps (generation happens inside the first of them).

Run it with ``make peers`` (builds ``benchmarks/peers/.venv`` with TRL pinned next to the same torch and
transformers) and then::

    benchmarks/peers/.venv/bin/python benchmarks/peers/trl_grpo.py --steps 8
    benchmarks/peers/.venv/bin/python benchmarks/peers/trl_grpo.py --ours packed,padded   # both of ours too

Ours runs in its own interpreter (``.venv``, the library's environment), TRL in this one, in the same invocation,
``--rounds`` times in turn (ours' variants, then TRL), so that a machine whose load changes affects all alike. The
first GRPO step of each run is a warm-up; the medians over all rounds of the other steps are compared, in wall time
and in CPU seconds of the process (steadier than wall time on a shared machine). Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS_PYTHON = ROOT / ".venv" / "bin" / "python"
VARIANTS = {"packed": [], "padded": ["actor_rollout_ref.model.use_remove_padding=false"]}
PROMPTS, N, PROMPT_LEN, RESPONSE_LEN, LR = 32, 8, 64, 8, 3e-4


def run_ours(variant: str, steps: int, mini_batch: int, workdir: Path) -> dict:
    """``benchmarks/grpo_step.py --quickstart`` in the library's interpreter; its JSON line."""
    cmd = [str(OURS_PYTHON), str(ROOT / "benchmarks" / "grpo_step.py"), "--quickstart", "--steps", str(steps),
           "--mini-batch", str(mini_batch), "--workdir", str(workdir / f"ours_{variant}"), *VARIANTS[variant]]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"ours ({variant}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def gsm8k_scorer():
    """verl's GSM8K rule scorer, loaded from its file (standard library only; this venv lacks verl's deps)."""
    spec = importlib.util.spec_from_file_location("gsm8k", ROOT / "verl" / "utils" / "reward_score" / "gsm8k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_score


def quickstart_inputs(workdir: Path, steps: int) -> tuple[str, str]:
    """The same task file and model ``grpo_step.py --quickstart`` builds (same seeds), from ours' own code."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path;"
        "import argparse; from benchmarks import grpo_step as g;"
        "a = g.parse_args(['--quickstart', '--steps', sys.argv[3]]);"
        "p = g.prepare_quickstart(a, Path(sys.argv[2])); print(p['model']); print(p['train'])"
    )
    out = subprocess.run([str(OURS_PYTHON), "-c", code, str(ROOT), str(workdir), str(steps)], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[-2], out[-1]


def run_trl(steps: int, mini_batch: int, workdir: Path) -> dict:
    import pandas as pd
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model_dir, train_file = quickstart_inputs(workdir / "trl_inputs", steps)
    frame = pd.read_parquet(train_file).head(PROMPTS * steps)
    dataset = Dataset.from_dict({
        "prompt": [list(map(dict, p)) for p in frame["prompt"]],
        "ground_truth": [r["ground_truth"] for r in frame["reward_model"]],
    })
    score = gsm8k_scorer()

    def reward(completions, ground_truth, **kwargs):
        return [score(c[-1]["content"] if isinstance(c, list) else c, g) for c, g in zip(completions, ground_truth)]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.times.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append((time.perf_counter(), time.process_time()))

    config = GRPOConfig(
        output_dir=str(workdir / "trl_out"), num_generations=N, per_device_train_batch_size=mini_batch * N,
        gradient_accumulation_steps=1, steps_per_generation=PROMPTS // mini_batch, num_iterations=1,
        max_completion_length=RESPONSE_LEN, temperature=1.0, beta=0.0, loss_type="dapo", learning_rate=LR,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.01, max_grad_norm=1.0,
        max_steps=steps * PROMPTS // mini_batch,
        use_cpu=True, bf16=False, fp16=False, logging_steps=10_000, save_strategy="no", report_to="none",
        shuffle_dataset=False, seed=0, dataloader_num_workers=0, gradient_checkpointing=False,
        use_vllm=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    per_gen = PROMPTS // mini_batch
    t = clock.times
    spans = [(t[(i + 1) * per_gen][0] - t[i * per_gen][0], t[(i + 1) * per_gen][1] - t[i * per_gen][1])
             for i in range(len(t)) if (i + 1) * per_gen < len(t)]
    steps_s, cpu_s = [round(w, 4) for w, _ in spans[1:]], [round(c, 4) for _, c in spans[1:]]
    return {"trl_version": trl.__version__, "warmup_step_s": round(spans[0][0], 4), "steps_s": steps_s,
            "step_s": round(statistics.median(steps_s), 4), "steps_cpu_s": cpu_s,
            "step_cpu_s": round(statistics.median(cpu_s), 4)}


def merge_rounds(runs: list[dict]) -> dict:
    """One result from several runs: every timed step pooled, medians of the step and of each phase."""
    merged = dict(runs[0])
    merged["steps_s"] = [s for run in runs for s in run["steps_s"]]
    merged["step_s"] = round(statistics.median(merged["steps_s"]), 4)
    merged["warmup_step_s"] = [run["warmup_step_s"] for run in runs]
    if all("steps_cpu_s" in run for run in runs):
        merged["steps_cpu_s"] = [s for run in runs for s in run["steps_cpu_s"]]
        merged["step_cpu_s"] = round(statistics.median(merged["steps_cpu_s"]), 4)
    for key in [k for k in runs[0] if k.startswith("timing_s/")]:
        merged[key] = round(statistics.median(run[key] for run in runs), 4)
    merged["timing_s/step"] = merged.get("timing_s/step") and merged["step_s"]
    return merged


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="GRPO steps of each; the first is the warm-up")
    p.add_argument("--ours", default="packed", help=f"comma-separated variants of ours to run: {sorted(VARIANTS)}")
    p.add_argument("--mini-batch", type=int, default=16, help="prompts per optimizer step (the quickstart: 16 of 32, "
                   "two steps; 32: one step per batch, on-policy)")
    p.add_argument("--rounds", type=int, default=1, help="runs of each, taken in turn (ours..., TRL, ours..., TRL)")
    p.add_argument("--workdir", help="where models, data and logs go (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error("--steps must be >= 2 (the first step is the warm-up)")
    import torch

    with tempfile.TemporaryDirectory(prefix="peers_") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ours_runs: dict[str, list[dict]] = {v: [] for v in args.ours.split(",")}
        trl_runs = []
        for r in range(args.rounds):
            for variant in ours_runs:
                ours_runs[variant].append(run_ours(variant, args.steps, args.mini_batch, workdir / f"round{r}"))
            trl_runs.append(run_trl(args.steps, args.mini_batch, workdir / f"round{r}"))
    ours = {v: merge_rounds(runs) for v, runs in ours_runs.items()}
    trl_result = merge_rounds(trl_runs)
    record = {
        "benchmark": "grpo_step_quickstart_vs_trl",
        "device": f"CPU ({platform.machine()}), {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "workload": f"{PROMPTS} prompts x n={N}, <= {RESPONSE_LEN} response tokens, "
                    f"{PROMPTS // args.mini_batch} optimizer step(s) of {args.mini_batch} prompts",
        "steps": args.steps,
        "rounds": args.rounds,
        "trl": trl_result,
    }
    for variant, result in ours.items():
        keys = ("step_s", "step_cpu_s", "steps_s", "steps_cpu_s", "warmup_step_s", "completion_tokens")
        record[f"ours_{variant}"] = {k: result[k] for k in keys if k in result} | {
            k: v for k, v in result.items() if k.startswith("timing_s/")}
        record[f"speedup_{variant}_vs_trl"] = round(trl_result["step_s"] / result["step_s"], 2)
        if "step_cpu_s" in result:
            record[f"cpu_speedup_{variant}_vs_trl"] = round(trl_result["step_cpu_s"] / result["step_cpu_s"], 2)
    if {"packed", "padded"} <= set(ours):
        record["packed_vs_padded_speedup"] = round(ours["padded"]["step_s"] / ours["packed"]["step_s"], 2)
        if "step_cpu_s" in ours["packed"]:
            record["packed_vs_padded_cpu_speedup"] = round(
                ours["padded"]["step_cpu_s"] / ours["packed"]["step_cpu_s"], 2)
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    main()
