"""Packed against padded forwards, side by side: ``PPOActor.compute_log_prob`` and ``update_policy`` on the same
ragged batch, the two variants alternating repetition by repetition so that a machine whose load changes affects
both alike.

Workload (default, the quickstart's shapes): its model shape (Qwen2, hidden 128, 2 layers, vocabulary of the test
tokenizer), 256 sequences whose prompts of 20-45 tokens are left-padded to 64 and whose responses of 1-8 tokens
are right-padded to 8; log-probs in one micro-batch of 256, the update in two mini-batches of 128. Reported per
variant: the median and best of the timed repetitions (the first is a warm-up), in wall seconds and in CPU
seconds of this process, and packed/padded ratios (> 1: packing is faster).

    python benchmarks/packing.py [--repeats 6] [--sequences 256] [--hidden-size 128] [--num-layers 2]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `verl` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import describe_device, emit  # noqa: E402
from verl.protocol import DataProto  # noqa: E402


def ragged_batch(n: int, prompt_len: int, response_len: int, vocab: int, seed: int = 0) -> DataProto:
    """Left-padded prompts of 20-45 tokens, right-padded responses of 1..response_len tokens, advantages."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, prompt_len + response_len), generator=g)
    p = torch.randint(20, min(46, prompt_len + 1), (n,), generator=g)
    r = torch.randint(1, response_len + 1, (n,), generator=g)
    cols = torch.arange(prompt_len + response_len)
    mask = ((cols >= prompt_len - p[:, None]) & (cols < prompt_len + r[:, None])).long()
    response_mask = mask[:, prompt_len:]
    return DataProto.from_dict({
        "input_ids": ids * mask, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "responses": ids[:, prompt_len:] * response_mask, "response_mask": response_mask,
        "advantages": torch.randn(n, response_len, generator=g) * response_mask,
        "old_log_probs": torch.zeros(n, response_len),
    })


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--sequences", type=int, default=256)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=2)
    args = p.parse_args(argv)
    from verl.utils.config import from_mapping
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer
    from verl.workers.actor import PPOActor
    from verl.workers.batching import BatchPlan
    from verl.workers.config import ActorRolloutRefConfig
    from verl.workers.fsdp import build_lr_scheduler, build_optimizer, load_hf_model

    cfg = from_mapping(ActorRolloutRefConfig, {"actor": {"ppo_mini_batch_size": 1, "optim": {"lr": 1e-4}}},
                       "actor_rollout_ref.")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", build_tiny_tokenizer(), arch="qwen2",
                                     hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=4,
                                     num_kv_heads=2, intermediate_size=4 * args.hidden_size, seed=0)
        actors = {}
        for name, packed in (("packed", True), ("padded", False)):
            model = load_hf_model(model_dir)
            opt = build_optimizer(model, cfg.actor.optim)
            actors[name] = PPOActor(model, cfg.actor, opt, build_lr_scheduler(opt, cfg.actor.optim, 100), packed=packed)
        data = ragged_batch(args.sequences, 64, 8, model.config.vocab_size)
    forward_plan = BatchPlan.for_forward(args.sequences, False, 0)
    update_plan = BatchPlan(args.sequences // 2, args.sequences // 2, None)
    times = {(v, phase): [] for v in actors for phase in ("log_prob", "update")}
    for _ in range(args.repeats + 1):
        for name, actor in actors.items():
            for phase, call in (("log_prob", lambda: actor.compute_log_prob(data, forward_plan, 1.0, True)),
                                ("update", lambda: actor.update_policy(data, update_plan, 1.0))):
                wall, cpu = time.perf_counter(), time.process_time()
                call()
                times[(name, phase)].append((time.perf_counter() - wall, time.process_time() - cpu))
    record = {"benchmark": "packing", "device": describe_device(torch.device("cpu")), "sequences": args.sequences,
              "valid_token_fraction": round(float(data.batch["attention_mask"].float().mean()), 3)}
    for (name, phase), values in times.items():
        values = values[1:]  # the first repetition is the warm-up
        for unit, i in (("s", 0), ("cpu_s", 1)):
            record[f"{name}/{phase}_{unit}"] = round(statistics.median(v[i] for v in values), 4)
            record[f"{name}/{phase}_best_{unit}"] = round(min(v[i] for v in values), 4)
    for phase in ("log_prob", "update"):
        for unit in ("s", "cpu_s", "best_s", "best_cpu_s"):
            record[f"padded_over_packed/{phase}_{unit}"] = round(
                record[f"padded/{phase}_{unit}"] / record[f"packed/{phase}_{unit}"], 2)
    emit(record)
    return record


if __name__ == "__main__":
    main()
