"""Multi-turn GRPO with a tool, end to end on a CPU: task -> tiny model -> SFT on tool-using demonstrations ->
GRPO with the calculator (rollout.multi_turn) -> summary of held-out accuracy and tool use before and after.

    python examples/multiturn/run_multiturn.py [--out_dir multiturn_out] [--grpo_steps 30] [--device cpu]

Every phase is an ordinary command (printed before it runs). The result measured on 2 CPU cores is recorded in
docs/advance/multiturn.md.
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
sys.path.insert(0, HERE)


def run(phase: str, cmd: list[str], timings: dict[str, float], log_path: str) -> None:
    print(f"\n=== {phase} ===\n$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    timings[phase] = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{phase} failed with exit code {proc.returncode}; see {log_path}")
    print(f"--- {phase} done in {timings[phase]:.0f}s", flush=True)


def make_model(out: str, data: str, hidden_size: int, num_layers: int, seed: int) -> str:
    """A tokenizer trained on rendered demonstrations (so the tool schema and calls take few tokens) and a random
    Qwen2-style model, saved offline."""
    import pandas as pd

    from make_task import TOOL
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    base = build_tiny_tokenizer()
    rows = pd.read_parquet(os.path.join(data, "sft.parquet")).head(200).to_dict("records")
    texts = []
    for row in rows:
        messages = [dict(m) for m in row["messages"]]
        for m in messages:
            if m.get("tool_calls") is not None:
                m["tool_calls"] = [{"type": "function", "function": {"name": c["function"]["name"],
                                   "arguments": json.loads(c["function"]["arguments"])}} for c in m["tool_calls"]]
            else:
                m.pop("tool_calls", None)
        texts.append(base.apply_chat_template(messages, tools=[TOOL], tokenize=False))
    tokenizer = build_tiny_tokenizer(extra_texts=texts * 10)
    return build_tiny_model(out, tokenizer, arch="qwen2", hidden_size=hidden_size, num_layers=num_layers,
                            num_heads=4, num_kv_heads=2, intermediate_size=4 * hidden_size, seed=seed)


def summarize(out: str, grpo: str, timings: dict[str, float]) -> dict:
    with open(os.path.join(grpo, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    acc = "val-core/openai/gsm8k/reward/mean@1"
    val = [(r["step"], r[acc], r.get("val-aux/tool_call_counts/mean")) for r in records if acc in r]
    train = [r for r in records if "tool_call_counts/mean" in r]
    first, last = train[:5], train[-5:]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    summary = {
        "heldout_accuracy_after_sft": val[0][1], "heldout_accuracy_after_grpo": val[-1][1],
        "heldout_tool_calls_per_answer_after_sft": val[0][2], "heldout_tool_calls_per_answer_after_grpo": val[-1][2],
        "train_tool_calls_first_5_steps": mean(first, "tool_call_counts/mean"),
        "train_tool_calls_last_5_steps": mean(last, "tool_call_counts/mean"),
        "train_reward_first_5_steps": mean(first, "critic/score/mean"),
        "train_reward_last_5_steps": mean(last, "critic/score/mean"),
        "seconds_per_phase": {k: round(v) for k, v in timings.items()},
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n================ multi-turn summary ================")
    for key, value in summary.items():
        print(f"{key:<42} {value if isinstance(value, dict) else round(value, 3)}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="multiturn_out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden_size", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--sft_steps", type=int, default=400)
    p.add_argument("--grpo_steps", type=int, default=30)
    p.add_argument("--test_freq", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    data, base, sft, grpo = (os.path.join(out, d) for d in ("data", "base_model", "sft", "grpo"))
    os.makedirs(out, exist_ok=True)
    timings: dict[str, float] = {}
    py = sys.executable
    run("task", [py, os.path.join(HERE, "make_task.py"), "--out_dir", data, "--seed", str(args.seed)], timings,
        os.path.join(out, "task.log"))
    start = time.perf_counter()
    make_model(base, data, args.hidden_size, args.num_layers, args.seed)
    timings["model"] = time.perf_counter() - start
    run("SFT", [py, "-m", "verl.trainer.fsdp_sft_trainer", f"data.train_files={data}/sft.parquet",
                "data.multiturn.enable=true", "data.multiturn.messages_key=messages", "data.multiturn.tools_key=tools",
                "data.max_length=256", "data.train_batch_size=32", "data.micro_batch_size_per_gpu=32",
                f"model.partial_pretrain={base}", "model.enable_gradient_checkpointing=false",
                "optim.lr=3e-3", "optim.weight_decay=0", "optim.warmup_steps_ratio=0.05",
                f"trainer.total_training_steps={args.sft_steps}", "trainer.total_epochs=100", f"trainer.seed={args.seed}",
                "trainer.logger=[file]", f"trainer.default_local_dir={sft}", "trainer.save_hf_model=true",
                f"trainer.device={args.device}", "trainer.n_gpus_per_node=1"], timings, os.path.join(out, "sft.log"))
    sft_model = os.path.join(sft, f"global_step_{args.sft_steps}", "huggingface")
    run("GRPO", [py, "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=grpo",
                 f"data.train_files={data}/train.parquet", f"data.val_files={data}/test.parquet",
                 "data.train_batch_size=16", "data.max_prompt_length=160", "data.max_response_length=96",
                 "data.return_raw_chat=true", f"data.seed={args.seed}",
                 f"actor_rollout_ref.model.path={sft_model}", "actor_rollout_ref.model.enable_gradient_checkpointing=false",
                 "actor_rollout_ref.actor.optim.lr=3e-4", "actor_rollout_ref.actor.ppo_mini_batch_size=8",
                 "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=64",
                 "actor_rollout_ref.rollout.name=native", "actor_rollout_ref.rollout.n=8",
                 "actor_rollout_ref.rollout.dtype=" + ("float32" if args.device == "cpu" else "bfloat16"),
                 "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=128",
                 "actor_rollout_ref.rollout.multi_turn.enable=true",
                 "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3",
                 f"actor_rollout_ref.rollout.multi_turn.tool_config_path={HERE}/config/calculator_tool_config.yaml",
                 f"trainer.device={args.device}", "trainer.n_gpus_per_node=1", "trainer.val_before_train=true",
                 f"trainer.total_training_steps={args.grpo_steps}", f"trainer.test_freq={args.test_freq}",
                 f"trainer.save_freq={args.grpo_steps}", f"trainer.seed={args.seed}",
                 "trainer.logger=[file]", f"trainer.default_local_dir={grpo}",
                 "trainer.project_name=multiturn", "trainer.experiment_name=calculator"],
        timings, os.path.join(out, "grpo.log"))
    return summarize(out, grpo, timings)


if __name__ == "__main__":
    main()
