"""The ``grpo_step`` benchmark: one whole GRPO step through the real trainer, completion tokens/s end to end.

Workload (DESIGN.md section 8): a Qwen2.5-0.5B-shaped model with random bf16 weights, 64 prompts of exactly
128 tokens, n = 8 samples each (512 sequences), exactly 256 response tokens (EOS ignored). The step is the
product's own path: ``verl.trainer.main_ppo.run_ppo`` with ``algorithm.adv_estimator=grpo`` on one worker
process (actor + native rollout in one process, one GPU): parquet prompts through ``RLHFDataset``, generation,
a cheap rule reward through the reward manager, old log-probs, GRPO advantages on the driver, the actor update,
and the weight sync to the rollout engine at the next generation. No KL term, so no reference model.

Two steps run; the first is the warm-up (``torch.compile``, CUDA-graph capture) and the others are reported:
completion tokens / the median ``timing_s/step``, and every ``timing_s/*`` phase (medians). ``--tiny`` runs the
same code on a tiny model on CPU (8 prompts x n=4, 32 + 16 tokens, float32). ``--quickstart`` runs the GRPO phase
of ``make quickstart`` (its model shape, task, batch and actor settings, from a randomly initialised model: 32
prompts x n=8, 64 + 8 tokens, two optimizer steps per batch) on CPU; ``benchmarks/peers/`` runs TRL on the same.

    python benchmarks/grpo_step.py            # the real workload (one GPU)
    python benchmarks/grpo_step.py --tiny     # CPU smoke variant, run by the test suite
    python benchmarks/grpo_step.py --quickstart --steps 8                    # the quickstart's GRPO step (CPU)
    python benchmarks/grpo_step.py --quickstart actor_rollout_ref.model.use_remove_padding=false   # padded
    python benchmarks/grpo_step.py actor_rollout_ref.actor.use_dynamic_bsz=false ...   # extra trainer overrides

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `benchmarks` and `verl` importable from the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks.common import build_model, describe_device, emit  # noqa: E402
from verl.utils.device import empty_cache, get_device  # noqa: E402

FULL = dict(num_prompts=64, n=8, prompt_length=128, response_length=256, dtype="bfloat16", mini_batch=16,
            max_token_len=12288)
TINY = dict(num_prompts=8, n=4, prompt_length=32, response_length=16, dtype="float32", mini_batch=4,
            max_token_len=1024)
# examples/quickstart/run_quickstart.py's GRPO phase; prompt_length is max_prompt_length (prompts are shorter)
QUICKSTART = dict(num_prompts=32, n=8, prompt_length=64, response_length=8, dtype="float32", mini_batch=16,
                  max_token_len=None, hidden_size=128, num_layers=2, lr=3e-4)

REWARD_SOURCE = '''\
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    """Cheap and varied across samples, so GRPO advantages (and gradients) are not all zero."""
    return (sum(map(ord, solution_str[:64])) % 7) / 6.0
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on a CPU-sized workload (for tests)")
    p.add_argument("--quickstart", action="store_true", help="the GRPO phase of `make quickstart` (CPU)")
    p.add_argument("--num-prompts", type=int)
    p.add_argument("--n", type=int, help="samples per prompt")
    p.add_argument("--prompt-length", type=int)
    p.add_argument("--response-length", type=int)
    p.add_argument("--mini-batch", type=int, help="prompts per optimizer step (actor.ppo_mini_batch_size)")
    p.add_argument("--max-token-len", type=int, help="token budget of one micro-batch on the worker")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], help="weights saved and rollout dtype")
    p.add_argument("--steps", type=int, default=2, help="GRPO steps; the first is the warm-up, the median of the others is reported")
    p.add_argument("--workdir", help="where the model, data and logs go (default: a temporary directory)")
    p.add_argument("overrides", nargs="*", help="extra main_ppo key=value overrides, applied last")
    args = p.parse_args(argv)
    if args.tiny and args.quickstart:
        p.error("--tiny and --quickstart are two different workloads; pick one")
    for key, value in (TINY if args.tiny else QUICKSTART if args.quickstart else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.num_prompts % args.mini_batch:
        p.error("--num-prompts must be a multiple of --mini-batch")
    if args.steps < 1:
        p.error("--steps must be >= 1")
    return args


def prompt_messages(tokenizer, prompt_length: int, num_prompts: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Chat prompts whose templated form is exactly ``prompt_length`` tokens: digit strings (the Qwen2
    pre-tokenizer splits digits one per token), as long as the template leaves room for."""
    overhead = len(tokenizer.apply_chat_template([{"role": "user", "content": ""}], add_generation_prompt=True, return_dict=False))
    digits = prompt_length - overhead
    if digits < 1:
        raise ValueError(f"--prompt-length {prompt_length} is shorter than the chat template's {overhead} tokens")
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(num_prompts):
        content = "".join(str(d) for d in torch.randint(0, 10, (digits,), generator=g).tolist())
        messages = [{"role": "user", "content": content}]
        length = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
        if length != prompt_length:
            raise RuntimeError(f"a prompt of {digits} digits templated to {length} tokens, not {prompt_length}; "
                               "the tokenizer no longer splits digits one per token")
        rows.append(messages)
    return rows


def prepare(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """The model directory (random weights of the benchmark shape + the offline tokenizer), the prompts
    parquet (two steps' worth) and the reward function file."""
    import pandas as pd

    from verl.utils.tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    device = torch.device("cpu") if args.tiny else get_device()
    model = build_model(args.tiny, getattr(torch, args.dtype), device)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(f"model vocab {model.config.vocab_size} is smaller than the tokenizer's {len(tokenizer)}")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # the saved tokenizer's ids, not Qwen's
        value = getattr(tokenizer, name) if name != "bos_token_id" else tokenizer.convert_tokens_to_ids("<|im_start|>")
        setattr(model.config, name, value)
        setattr(model.generation_config, name, value)
    model_dir = workdir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    del model
    gc.collect()
    empty_cache()  # the worker process needs the accelerator's memory, not this driver
    rows = [{"data_source": "bench", "prompt": messages, "ability": "bench",
             "reward_model": {"style": "rule", "ground_truth": "0"}, "extra_info": {"index": i}}
            for i, messages in enumerate(prompt_messages(tokenizer, args.prompt_length, args.num_prompts * args.steps))]
    train = workdir / "prompts.parquet"
    pd.DataFrame(rows).to_parquet(train)
    reward = workdir / "reward.py"
    reward.write_text(REWARD_SOURCE)
    return {"model": str(model_dir), "train": str(train), "reward": str(reward), "logs": str(workdir / "logs")}


def prepare_quickstart(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """The quickstart's task (examples/quickstart/make_task.py) and its base model shape (make_model.py)."""
    import importlib.util

    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    spec = importlib.util.spec_from_file_location("make_task", ROOT / "examples" / "quickstart" / "make_task.py")
    make_task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_task)
    train, _ = make_task.build(str(workdir / "data"), n_train=args.num_prompts * args.steps, n_test=16, seed=0)
    model = build_tiny_model(workdir / "model", build_tiny_tokenizer(), arch="qwen2", hidden_size=args.hidden_size,
                             num_layers=args.num_layers, num_heads=4, num_kv_heads=2,
                             intermediate_size=4 * args.hidden_size, seed=0)
    return {"model": str(model), "train": str(train), "logs": str(workdir / "logs")}


def quickstart_overrides(args: argparse.Namespace, paths: dict[str, str]) -> list[str]:
    """run_quickstart.py's GRPO command (the GSM8K rule reward of the task's data source), no validation."""
    return [
        "algorithm.adv_estimator=grpo", f"data.train_files={paths['train']}", f"data.train_batch_size={args.num_prompts}",
        f"data.max_prompt_length={args.prompt_length}", f"data.max_response_length={args.response_length}",
        "data.dataloader_num_workers=0", "data.shuffle=false",
        f"actor_rollout_ref.model.path={paths['model']}", "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        f"actor_rollout_ref.actor.optim.lr={args.lr}", f"actor_rollout_ref.actor.ppo_mini_batch_size={args.mini_batch}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=128",
        "actor_rollout_ref.rollout.name=native", f"actor_rollout_ref.rollout.n={args.n}",
        f"actor_rollout_ref.rollout.dtype={args.dtype}", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=256",
        "trainer.device=cpu", "trainer.n_gpus_per_node=1", f"trainer.total_training_steps={args.steps}",
        "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.logger=[file]",
        f"trainer.default_local_dir={paths['logs']}", "trainer.project_name=benchmarks",
        "trainer.experiment_name=grpo_step_quickstart", *args.overrides,
    ]


def trainer_overrides(args: argparse.Namespace, paths: dict[str, str]) -> list[str]:
    return [
        f"data.train_files={paths['train']}", f"data.train_batch_size={args.num_prompts}",
        f"data.max_prompt_length={args.prompt_length}", f"data.max_response_length={args.response_length}",
        "data.dataloader_num_workers=0", "data.shuffle=false",
        f"actor_rollout_ref.model.path={paths['model']}",
        "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.mini_batch}",
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={args.max_token_len}",
        "actor_rollout_ref.actor.optim.lr=1e-6", "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.rollout.name=native", f"actor_rollout_ref.rollout.n={args.n}",
        f"actor_rollout_ref.rollout.dtype={args.dtype}", "actor_rollout_ref.rollout.ignore_eos=true",
        f"actor_rollout_ref.rollout.max_num_seqs={args.num_prompts * args.n}",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true",
        f"actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu={args.max_token_len}",
        "algorithm.adv_estimator=grpo", "algorithm.use_kl_in_reward=false",
        f"custom_reward_function.path={paths['reward']}",
        f"trainer.device={'cpu' if args.tiny else 'cuda'}", "trainer.nnodes=1", "trainer.n_gpus_per_node=1",
        f"trainer.total_training_steps={args.steps}", "trainer.val_before_train=false", "trainer.test_freq=-1",
        "trainer.save_freq=-1", "trainer.logger=[file]", f"trainer.default_local_dir={paths['logs']}",
        "trainer.project_name=benchmarks", "trainer.experiment_name=grpo_step",
        *args.overrides,
    ]


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def record_for(args: argparse.Namespace, rows: list[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    timed = rows[1:] or rows  # the first step is the warm-up
    last = {k: _median([r[k] for r in timed if k in r]) for k in timed[-1] if isinstance(timed[-1][k], (int, float))}
    sequences = args.num_prompts * args.n
    completion = round(last["response_length/mean"] * sequences)
    step_s = last["timing_s/step"]
    workload = "_tiny" if args.tiny else "_quickstart" if args.quickstart else ""
    record = {
        "benchmark": "grpo_step" + workload,
        "device": describe_device(device),
        "dtype": args.dtype,
        "num_prompts": args.num_prompts,
        "n": args.n,
        "prompt_length": args.prompt_length,
        "response_length": args.response_length,
        "completion_tokens": completion,
        "step_s": round(step_s, 4),
        "completion_tokens_per_s": round(completion / step_s, 1),
        "warmup_step_s": round(rows[0]["timing_s/step"], 4) if len(rows) > 1 else None,
        "steps_s": [round(r["timing_s/step"], 4) for r in timed],
        "mfu_actor": last.get("perf/mfu/actor"),
        "overrides": args.overrides,
    }
    record.update({k: round(v, 4) for k, v in sorted(last.items()) if k.startswith("timing_s/")})
    return record


@contextlib.contextmanager
def _step_cpu_clock():
    """CPU seconds of this process per GRPO step (``train_step``): on a loaded machine a steadier measure of the
    work than wall time. Covers the workers only in local mode, where they run in this process."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    seconds: list[float] = []
    original = RayPPOTrainer.train_step

    def timed(self, batch):
        start = time.process_time()
        try:
            return original(self, batch)
        finally:
            seconds.append(time.process_time() - start)

    RayPPOTrainer.train_step = timed
    try:
        yield seconds
    finally:
        RayPPOTrainer.train_step = original


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from verl.trainer.config import load_config, resolve_device
    from verl.trainer.main_ppo import run_ppo

    with tempfile.TemporaryDirectory(prefix="grpo_step_") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.quickstart:
            paths = prepare_quickstart(args, workdir)
            config = load_config(quickstart_overrides(args, paths))
        else:
            paths = prepare(args, workdir)
            config = load_config(trainer_overrides(args, paths))
        with _step_cpu_clock() as cpu_s:
            run_ppo(config)
        with open(Path(paths["logs"]) / "metrics.jsonl") as f:
            rows = [json.loads(line) for line in f]
    device = torch.device("cpu") if resolve_device(config) == "cpu" else get_device()  # where the worker ran
    record = record_for(args, rows[-args.steps:], device)
    if len(cpu_s) == len(rows[-args.steps:]) and len(cpu_s) > 1:  # local mode: the workers ran in this process
        record["step_cpu_s"] = round(_median(cpu_s[1:]), 4)
        record["steps_cpu_s"] = [round(c, 4) for c in cpu_s[1:]]
    emit(record)
    return record


if __name__ == "__main__":
    main()
