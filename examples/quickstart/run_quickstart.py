"""The quickstart: task -> tiny model -> SFT warm-up -> GRPO with ``main_ppo`` -> summary and plot.

Every phase is an ordinary command a user can copy (printed before it runs). Defaults finish in about ten
minutes on 2 CPU cores; ``--device cuda --hidden_size 512 --num_layers 8`` scales it up on a GPU.

    python examples/quickstart/run_quickstart.py [--out_dir quickstart_out] [--grpo_steps 80] [--device cpu]
    python examples/quickstart/run_quickstart.py --reuse_sft --rollout vllm   # GRPO again, with vLLM rollouts

GRPO runs in local mode (one process, no Ray: ``trainer.execution_mode=local``), so its first step finishes a few
seconds after the command starts; the summary says how many (``--execution_mode ray`` runs it on Ray instead).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(phase: str, cmd: list[str], timings: dict[str, float], log_path: str | None = None) -> None:
    """Run one phase, echo its command, stream its progress, and record its wall time."""
    print(f"\n=== {phase} ===\n$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    if log_path:  # long phases: the full output goes to a log, the progress bar to the terminal
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT if phase != "GRPO" else None)
    else:
        proc = subprocess.run(cmd)
    timings[phase] = time.perf_counter() - start
    if proc.returncode != 0:
        hint = f"; see {log_path}" if log_path else ""
        sys.exit(f"{phase} failed with exit code {proc.returncode}{hint}")
    print(f"--- {phase} done in {timings[phase]:.0f}s", flush=True)


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def seconds_to_first_step(records: list[dict], started: float) -> float:
    """From the command's start to the first finished training step (its ``metrics.jsonl`` record's time)."""
    first = next(r for r in records if r["step"] >= 1)
    return round(first["time"] - started, 1)


def summarize(out: str, grpo_dir: str, sft_dir: str, timings: dict[str, float], grpo_started: float,
              execution_mode: str) -> dict:
    from verl.utils.tracking import plot_metrics

    acc_key = "val-core/openai/gsm8k/reward/mean@1"
    suffix = os.path.basename(grpo_dir).removeprefix("grpo")  # "" for the native engine, "_vllm", "_hf", "_ray"
    records = read_jsonl(os.path.join(grpo_dir, "metrics.jsonl"))
    val = [(r["step"], r[acc_key]) for r in records if acc_key in r]
    rewards = [r["critic/score/mean"] for r in records if "critic/score/mean" in r]
    plot = plot_metrics(os.path.join(grpo_dir, "metrics.jsonl"), ["critic/score/mean", acc_key],
                        os.path.join(out, f"quickstart{suffix}.png"), title="GRPO on the quickstart task")
    summary = {
        "heldout_accuracy_after_sft": val[0][1],
        "heldout_accuracy_after_grpo": val[-1][1],
        "train_reward_first_5_steps": sum(rewards[:5]) / max(len(rewards[:5]), 1),
        "train_reward_last_5_steps": sum(rewards[-5:]) / max(len(rewards[-5:]), 1),
        "seconds_per_phase": {k: round(v, 1) for k, v in timings.items()},
        "execution_mode": execution_mode,
        "seconds_to_first_grpo_step": seconds_to_first_step(records, grpo_started),
        "grpo_checkpoint": os.path.join(grpo_dir, f"global_step_{val[-1][0]}", "actor"),
        "sft_model": sft_dir,
        "metrics": os.path.join(grpo_dir, "metrics.jsonl"),
        "plot": plot,
    }
    with open(os.path.join(out, f"summary{suffix}.json"), "w") as f:
        json.dump(summary, f, indent=2)
    gain = 100 * (summary["heldout_accuracy_after_grpo"] - summary["heldout_accuracy_after_sft"])
    print("\n================ quickstart summary ================")
    print(f"held-out accuracy after SFT : {100 * summary['heldout_accuracy_after_sft']:5.1f}%")
    print(f"held-out accuracy after GRPO: {100 * summary['heldout_accuracy_after_grpo']:5.1f}%  ({gain:+.1f} points)")
    print(f"train reward, first 5 steps {summary['train_reward_first_5_steps']:.3f} -> last 5 steps "
          f"{summary['train_reward_last_5_steps']:.3f}")
    for phase, seconds in timings.items():
        print(f"  {phase:<12} {seconds:6.0f}s")
    print(f"GRPO's first step finished {summary['seconds_to_first_grpo_step']:.1f}s after its command started "
          f"({execution_mode} mode)")
    print(f"checkpoint: {summary['grpo_checkpoint']}\nlogs:       {summary['metrics']}\nplot:       {plot}")
    return summary


def prepare_and_sft(args: argparse.Namespace, data: str, base: str, sft: str, timings: dict[str, float]) -> None:
    """The task, the base model, and SFT on the teacher's demonstrations, exported as a transformers directory."""
    py = sys.executable
    run("task", [py, os.path.join(HERE, "make_task.py"), "--out_dir", data, "--n_train", str(args.n_train),
                 "--n_test", str(args.n_test), "--seed", str(args.seed)], timings)
    run("model", [py, os.path.join(HERE, "make_model.py"), "--out_dir", base, "--hidden_size", str(args.hidden_size),
                  "--num_layers", str(args.num_layers), "--seed", str(args.seed)], timings)
    # SFT on the teacher's demonstrations (question -> "#### answer")
    run("SFT", [py, "-m", "verl.trainer.fsdp_sft_trainer",
                f"data.train_files={data}/train.parquet", f"data.val_files={data}/test.parquet",
                "data.prompt_key=extra_info", "data.prompt_dict_keys=[question]",
                "data.response_key=extra_info", "data.response_dict_keys=[answer]",
                "data.max_length=64", "data.train_batch_size=64", "data.micro_batch_size_per_gpu=64",
                f"model.partial_pretrain={base}", "model.enable_gradient_checkpointing=false",
                "optim.lr=3e-3", "optim.weight_decay=0", "optim.warmup_steps_ratio=0.05",
                f"trainer.total_training_steps={args.sft_steps}", "trainer.total_epochs=100", f"trainer.seed={args.seed}",
                "trainer.logger=[file]", f"trainer.default_local_dir={sft}", "trainer.save_hf_model=true",
                f"trainer.device={args.device}", "trainer.n_gpus_per_node=1"], timings)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="quickstart_out")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--hidden_size", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--sft_steps", type=int, default=200)
    p.add_argument("--grpo_steps", type=int, default=80)
    p.add_argument("--test_freq", type=int, default=10)
    p.add_argument("--n_train", type=int, default=4000)
    p.add_argument("--n_test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rollout", default="native", choices=["native", "vllm", "hf"],
                   help="GRPO's rollout engine (vllm needs vLLM installed; make setup does it on Linux x86-64)")
    p.add_argument("--execution_mode", default="local", choices=["local", "ray"],
                   help="GRPO in this process without Ray (local), or on worker processes started by Ray")
    p.add_argument("--lora_rank", type=int, default=0,
                   help="GRPO with LoRA adapters of this rank on the SFT model (0: full fine-tuning)")
    p.add_argument("--lora_alpha", type=float, default=32)
    p.add_argument("--grpo_lr", type=float, default=None,
                   help="GRPO learning rate (default 3e-4; 3e-3 with LoRA, whose small adapters need a larger step)")
    p.add_argument("--reuse_sft", action="store_true",
                   help="reuse the task and SFT model already in --out_dir: run GRPO only (e.g. with another engine)")
    args = p.parse_args(argv)

    out = os.path.abspath(args.out_dir)
    grpo_dir = ("grpo" if args.rollout == "native" else f"grpo_{args.rollout}") + (
        "_ray" if args.execution_mode == "ray" else "") + (f"_lora{args.lora_rank}" if args.lora_rank else "")
    lr = args.grpo_lr or (3e-3 if args.lora_rank else 3e-4)
    data, base, sft, grpo = (os.path.join(out, d) for d in ("data", "base_model", "sft", grpo_dir))
    sft_model = os.path.join(sft, f"global_step_{args.sft_steps}", "huggingface")
    timings: dict[str, float] = {}
    os.makedirs(out, exist_ok=True)
    if not args.reuse_sft:
        prepare_and_sft(args, data, base, sft, timings)
    elif not os.path.isdir(sft_model):
        p.error(f"--reuse_sft: no SFT model at {sft_model}; run once without it (same --sft_steps)")
    # GRPO from the SFT model, rewarded by the GSM8K rule scorer against the true sums
    grpo_started = time.time()
    run("GRPO", [sys.executable, "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=grpo",
                 f"data.train_files={data}/train.parquet", f"data.val_files={data}/test.parquet",
                 "data.train_batch_size=32", "data.max_prompt_length=64", "data.max_response_length=8",
                 f"data.seed={args.seed}", "data.dataloader_num_workers=0",  # tiny rows: no loader processes
                 f"actor_rollout_ref.model.path={sft_model}", "actor_rollout_ref.model.enable_gradient_checkpointing=false",
                 f"actor_rollout_ref.actor.optim.lr={lr}", "actor_rollout_ref.actor.ppo_mini_batch_size=16",
                 f"actor_rollout_ref.model.lora_rank={args.lora_rank}", f"actor_rollout_ref.model.lora_alpha={args.lora_alpha}",
                 "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=128",
                 f"actor_rollout_ref.rollout.name={args.rollout}", "actor_rollout_ref.rollout.n=8",
                 "actor_rollout_ref.rollout.dtype=" + ("float32" if args.device == "cpu" else "bfloat16"),
                 "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=256",
                 f"trainer.device={args.device}", "trainer.n_gpus_per_node=1",
                 f"trainer.execution_mode={args.execution_mode}", f"trainer.total_training_steps={args.grpo_steps}",
                 f"trainer.test_freq={args.test_freq}",
                 f"trainer.save_freq={args.grpo_steps}", f"trainer.seed={args.seed}",
                 "trainer.logger=[file]", f"trainer.default_local_dir={grpo}",
                 "trainer.project_name=quickstart", f"trainer.experiment_name={grpo_dir}"],
        timings, log_path=os.path.join(out, f"{grpo_dir}.log"))
    return summarize(out, grpo, sft_model, timings, grpo_started, args.execution_mode)


if __name__ == "__main__":
    main()
