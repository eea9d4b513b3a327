"""Multi-turn GRPO with a tool, end to end on a CPU: task -> tiny model -> SFT on tool-using demonstrations ->
GRPO with the calculator (rollout.multi_turn) -> summary and plot of held-out accuracy and tool use.

    python examples/multiturn/run_multiturn.py [--out_dir multiturn_out] [--seeds 0 1 2] [--device cpu]

The task (``make_task.py``): ``What is 47 * 86?``, which a 2-layer model cannot compute; the calculator
(``calculator_tool.py``) is bound to each problem, so the model has to call ``calculate()`` and copy its 4-digit
answer after ``####``. The SFT teacher calls it 40% of the time and otherwise guesses. For each seed:

1. the random base model, evaluated with the tool available (``trainer.val_only``);
2. SFT on the teacher's demonstrations (multi-turn rows with tool calls, loss on assistant tokens);
3. GRPO from the SFT model with the tool (``trainer.execution_mode=local``), evaluated every ``--test_freq`` steps.

Held-out evaluation samples 2 answers per problem at temperature 1 (the policy itself, not its argmax), so accuracy
is the probability of a right answer. Every phase is an ordinary command (printed before it runs); the figures
measured on 2 CPU cores are in docs/advance/multiturn.md.
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
ACC = "val-core/openai/gsm8k/reward/mean@2"


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
    """A tokenizer trained on rendered demonstrations (so the tool schema and calls take fewer tokens) and a random
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


def ppo_args(args: argparse.Namespace, data: str, model: str, out: str) -> list[str]:
    """``main_ppo`` overrides shared by the base-model evaluation and GRPO."""
    return [
        "algorithm.adv_estimator=grpo", f"data.train_files={data}/train.parquet", f"data.val_files={data}/test.parquet",
        "data.train_batch_size=8", "data.max_prompt_length=160", "data.max_response_length=64",
        "data.return_raw_chat=true", f"data.seed={args.seed}",
        f"actor_rollout_ref.model.path={model}", "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        f"actor_rollout_ref.actor.optim.lr={args.grpo_lr}", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32",
        "actor_rollout_ref.rollout.name=native", "actor_rollout_ref.rollout.n=8",
        "actor_rollout_ref.rollout.dtype=" + ("float32" if args.device == "cpu" else "bfloat16"),
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=128",
        "actor_rollout_ref.rollout.val_kwargs.do_sample=true", "actor_rollout_ref.rollout.val_kwargs.temperature=1.0",
        "actor_rollout_ref.rollout.val_kwargs.n=2",
        "actor_rollout_ref.rollout.multi_turn.enable=true", "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3",
        f"actor_rollout_ref.rollout.multi_turn.tool_config_path={HERE}/config/calculator_tool_config.yaml",
        f"trainer.device={args.device}", "trainer.n_gpus_per_node=1", "trainer.execution_mode=local",
        f"trainer.seed={args.seed}", "trainer.logger=[file]", f"trainer.default_local_dir={out}",
        f"trainer.validation_data_dir={out}/val", "trainer.project_name=multiturn", "trainer.experiment_name=calculator",
    ]


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def heldout(run_dir: str, record: dict) -> dict:
    """One evaluation: accuracy, successful tool calls per answer, and accuracy with / without a tool call (from the
    dumped generations)."""
    samples = read_jsonl(os.path.join(run_dir, "val", f"val_{record['step']}.jsonl"))
    used = [s["score"] for s in samples if "<tool_response>" in s["output"]]
    unused = [s["score"] for s in samples if "<tool_response>" not in s["output"]]
    calls = record.get("val-aux/tool_call_counts/mean", 0.0)
    return {
        "accuracy": record[ACC],
        "tool_calls_ok_per_answer": calls * (1 - record.get("val-aux/multi_turn/tool_failure_rate", 0.0)),
        "answers_with_tool": len(used) / len(samples),
        "accuracy_with_tool": sum(used) / len(used) if used else None,
        "accuracy_without_tool": sum(unused) / len(unused) if unused else None,
    }


def summarize_seed(out: str, base_dir: str, grpo_dir: str, timings: dict[str, float]) -> dict:
    from verl.utils.tracking import plot_metrics

    records = read_jsonl(os.path.join(grpo_dir, "metrics.jsonl"))
    val = [r for r in records if ACC in r]
    train = [r for r in records if "tool_call_counts/mean" in r]
    ok = lambda r: r["tool_call_counts/mean"] * (1 - r.get("multi_turn/tool_failure_rate", 0.0))  # noqa: E731
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    base = next(r for r in read_jsonl(os.path.join(base_dir, "metrics.jsonl")) if ACC in r)
    plot = plot_metrics(os.path.join(grpo_dir, "metrics.jsonl"),
                        [ACC, "val-aux/tool_call_counts/mean", "critic/score/mean", "tool_call_counts/mean"],
                        os.path.join(out, "multiturn.png"), title="GRPO with a calculator tool (after SFT)")
    return {
        "heldout_base_model": heldout(base_dir, base),
        "heldout_after_sft": heldout(grpo_dir, val[0]),
        "heldout_after_grpo": heldout(grpo_dir, val[-1]),
        "heldout_curve": [(r["step"], r[ACC]) for r in val],
        "train_tool_calls_ok_first_5_steps": mean([ok(r) for r in train[:5]]),
        "train_tool_calls_ok_last_5_steps": mean([ok(r) for r in train[-5:]]),
        "train_reward_first_5_steps": mean([r["critic/score/mean"] for r in train[:5]]),
        "train_reward_last_5_steps": mean([r["critic/score/mean"] for r in train[-5:]]),
        "seconds_per_phase": {k: round(v) for k, v in timings.items()},
        "plot": plot,
    }


def run_seed(args: argparse.Namespace, out: str) -> dict:
    data, base, sft, base_eval, grpo = (os.path.join(out, d) for d in ("data", "base_model", "sft", "base_eval", "grpo"))
    os.makedirs(out, exist_ok=True)
    timings: dict[str, float] = {}
    py = sys.executable
    run("task", [py, os.path.join(HERE, "make_task.py"), "--out_dir", data, "--seed", str(args.seed),
                 "--n_test", str(args.n_test)], timings, os.path.join(out, "task.log"))
    start = time.perf_counter()
    make_model(base, data, args.hidden_size, args.num_layers, args.seed)
    timings["model"] = time.perf_counter() - start
    run("base model, held-out", [py, "-m", "verl.trainer.main_ppo", *ppo_args(args, data, base, base_eval),
                                 "trainer.val_only=true"], timings, os.path.join(out, "base_eval.log"))
    run("SFT", [py, "-m", "verl.trainer.fsdp_sft_trainer", f"data.train_files={data}/sft.parquet",
                "data.multiturn.enable=true", "data.multiturn.messages_key=messages", "data.multiturn.tools_key=tools",
                "data.max_length=192", "data.train_batch_size=32", "data.micro_batch_size_per_gpu=32",
                f"model.partial_pretrain={base}", "model.enable_gradient_checkpointing=false",
                # the copy of the tool's answer is learned late (a sudden drop of the loss, between step 150 and 350
                # on 2 layers, depending on the seed): the learning rate must not have decayed to nothing by then
                "optim.lr=3e-3", "optim.weight_decay=0", "optim.warmup_steps_ratio=0.05", "optim.min_lr_ratio=0.3",
                f"trainer.total_training_steps={args.sft_steps}", "trainer.total_epochs=100", f"trainer.seed={args.seed}",
                "trainer.logger=[file]", f"trainer.default_local_dir={sft}", "trainer.save_hf_model=true",
                f"trainer.device={args.device}", "trainer.n_gpus_per_node=1"], timings, os.path.join(out, "sft.log"))
    sft_model = os.path.join(sft, f"global_step_{args.sft_steps}", "huggingface")
    run("GRPO", [py, "-m", "verl.trainer.main_ppo", *ppo_args(args, data, sft_model, grpo),
                 "trainer.val_before_train=true", f"trainer.total_training_steps={args.grpo_steps}",
                 f"trainer.test_freq={args.test_freq}", f"trainer.save_freq={args.grpo_steps}"],
        timings, os.path.join(out, "grpo.log"))
    return summarize_seed(out, base_eval, grpo, timings)


def pct(value: float | None) -> str:
    return "  -  " if value is None else f"{100 * value:5.1f}%"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default="multiturn_out")
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden_size", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--sft_steps", type=int, default=600)
    p.add_argument("--grpo_steps", type=int, default=30)
    p.add_argument("--grpo_lr", type=float, default=5e-4)
    p.add_argument("--test_freq", type=int, default=5)
    p.add_argument("--n_test", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args(argv)
    out = os.path.abspath(args.out_dir)
    results = {}
    for seed in args.seeds:
        args.seed = seed
        results[seed] = run_seed(args, os.path.join(out, f"seed{seed}"))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("\n================ multi-turn summary (held-out, 2 samples per problem at temperature 1) ================")
    print("seed  phase       accuracy  tool calls ok/answer  answers with tool  acc. with tool  acc. without tool")
    for seed, r in results.items():
        for phase in ("heldout_base_model", "heldout_after_sft", "heldout_after_grpo"):
            h = r[phase]
            print(f"{seed:>4}  {phase.removeprefix('heldout_'):<10}  {pct(h['accuracy'])}    "
                  f"{h['tool_calls_ok_per_answer']:16.2f}  {pct(h['answers_with_tool']):>17}  "
                  f"{pct(h['accuracy_with_tool']):>14}  {pct(h['accuracy_without_tool']):>17}")
        print(f"      training: successful tool calls per trajectory {r['train_tool_calls_ok_first_5_steps']:.2f} "
              f"(steps 1-5) -> {r['train_tool_calls_ok_last_5_steps']:.2f} (last 5); reward "
              f"{r['train_reward_first_5_steps']:.3f} -> {r['train_reward_last_5_steps']:.3f}; "
              f"seconds {r['seconds_per_phase']}; plot {r['plot']}")
    return results


if __name__ == "__main__":
    main()
