"""The ``train`` benchmark: tokens/s and MFU of the actor update, ours next to a plain transformers loop, same run.

Workload (DESIGN.md section 8): a Qwen2.5-0.5B-shaped model with random bf16 weights; 512 sequences of 128 prompt
+ 256 response tokens (512 x 384 = 196,608 tokens, no padding); mini-batches of 128 sequences (4 optimizer steps),
micro-batches of 8. Two paths train on the same tokens:

- ``transformers``: the plain loop: bf16 model, ``model(input_ids, labels=...)`` cross-entropy on the response
  tokens, backward per micro-batch, gradient clipping, ``torch.optim.AdamW``.
- ``verl``: our worker's update path: ``PPOActor.update_policy`` on the model wrapped by
  :func:`verl.workers.fsdp.apply_fsdp2` in a one-rank torch.distributed world (nccl on GPUs, gloo on CPU):
  fp32 master weights, bf16 compute, the PPO clipped policy loss (entropy and KL terms on request), packed
  sequences, log-probs of the response positions only.

MFU is ``6 x params x tokens / seconds / peak`` (bf16 dense peak of the device; none on CPU).
``--tiny`` runs the same code on a tiny model on CPU (16 sequences of 16 + 32 tokens, float32).

    python benchmarks/train.py            # the real workload (GPU)
    python benchmarks/train.py --tiny     # CPU smoke variant, run by the test suite

Prints one JSON line per path; the verl line carries ``speedup_vs_transformers`` when both ran.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `verl` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import QWEN25_05B_SHAPE, TINY_SHAPE, Timer, build_model, describe_device, emit  # noqa: E402
from verl.protocol import DataProto  # noqa: E402
from verl.utils.device import empty_cache, get_device, get_dist_backend, is_accelerator_available  # noqa: E402
from verl.workers.perf import num_params, peak_flops  # noqa: E402

FULL = dict(num_sequences=512, prompt_length=128, response_length=256, mini_batch=128, micro_batch=8, dtype="bfloat16")
TINY = dict(num_sequences=16, prompt_length=16, response_length=32, mini_batch=8, micro_batch=4, dtype="float32")
LR = 1e-6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on a CPU-sized workload (for tests)")
    p.add_argument("--paths", default="transformers,verl", help="comma-separated, run in this order")
    p.add_argument("--num-sequences", type=int)
    p.add_argument("--prompt-length", type=int)
    p.add_argument("--response-length", type=int)
    p.add_argument("--mini-batch", type=int, help="sequences per optimizer step")
    p.add_argument("--micro-batch", type=int, help="sequences per forward/backward")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], help="compute dtype (verl keeps fp32 master weights)")
    p.add_argument("--dynamic-bsz", action="store_true", help="verl: pack micro-batches by --max-token-len tokens")
    p.add_argument("--max-token-len", type=int, default=8192, help="verl: token budget of one micro-batch")
    p.add_argument("--no-remove-padding", action="store_true", help="verl: padded forward instead of packed")
    p.add_argument("--no-reshard", action="store_true", help="verl: keep gathered parameters between forward and "
                   "backward (fsdp_config.reshard_after_forward=false)")
    p.add_argument("--entropy-coeff", type=float, default=0.0, help="verl: entropy bonus (adds a full-vocabulary pass)")
    p.add_argument("--kl-loss", action="store_true", help="verl: add the KL(actor || ref) loss term")
    p.add_argument("--gradient-checkpointing", action="store_true", help="both paths: recompute activations")
    p.add_argument("--repeats", type=int, default=1, help="timed updates per path (the best is reported)")
    args = p.parse_args(argv)
    for key, value in (TINY if args.tiny else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.num_sequences % args.mini_batch or args.mini_batch % args.micro_batch:
        p.error("--num-sequences must be a multiple of --mini-batch, and --mini-batch of --micro-batch")
    return args


def make_batch(args: argparse.Namespace, vocab_size: int, seed: int = 0) -> DataProto:
    """Full-length random sequences (ids >= 3, clear of special ids) with per-sequence advantages."""
    g = torch.Generator().manual_seed(seed)
    n, P, R = args.num_sequences, args.prompt_length, args.response_length
    ids = torch.randint(3, vocab_size, (n, P + R), generator=g)
    mask = torch.ones_like(ids)
    response_mask = torch.ones(n, R, dtype=torch.long)
    return DataProto.from_dict({
        "input_ids": ids, "attention_mask": mask, "position_ids": torch.arange(P + R).expand(n, -1).clone(),
        "prompts": ids[:, :P], "responses": ids[:, P:], "response_mask": response_mask,
        "advantages": torch.randn(n, 1, generator=g).expand(-1, R) * response_mask,
    })


def init_one_rank_world(device: torch.device) -> bool:
    """Join a torch.distributed world of one rank (what a worker group of 1 does); True if this call created it."""
    if dist.is_initialized():
        if dist.get_world_size() != 1:
            raise RuntimeError("benchmarks/train.py measures one rank; run it as a plain script, not under torchrun")
        return False
    from verl.single_controller.base.worker import find_free_port

    if device.type != "cpu":
        torch.cuda.set_device(device)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(find_free_port()))
    dist.init_process_group(get_dist_backend(device.type), rank=0, world_size=1)
    return True


def new_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The benchmark model with the same random weights for both paths (drawn in the bf16/compute dtype)."""
    model = build_model(args.tiny, getattr(torch, args.dtype), device).to(dtype).train()
    model.config.use_cache = False
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def transformers_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: DataProto,
                        args: argparse.Namespace) -> float:
    """The plain loop over ``data``: mini-batches, micro-batch accumulation, clipping, AdamW. Returns the last grad norm."""
    device = next(model.parameters()).device
    P = args.prompt_length
    micro_per_mini = args.mini_batch // args.micro_batch
    grad_norm = torch.zeros(())
    for mini in data.split(args.mini_batch):
        optimizer.zero_grad(set_to_none=True)
        for mb in mini.split(args.micro_batch):
            ids = mb.batch["input_ids"].to(device)
            labels = ids.clone()
            labels[:, :P] = -100  # the loss covers the response tokens, as the actor's does
            loss = model(input_ids=ids, attention_mask=mb.batch["attention_mask"].to(device), labels=labels).loss
            (loss / micro_per_mini).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return float(grad_norm)


def run_transformers(args: argparse.Namespace, data: DataProto, device: torch.device) -> tuple[dict[str, Any], int]:
    model = new_model(args, device, getattr(torch, args.dtype))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    transformers_update(model, optimizer, data[: args.mini_batch], args)  # warm-up: kernels, allocator, optimizer state
    best, grad_norm = None, None
    for _ in range(args.repeats):
        with Timer() as t:
            grad_norm = transformers_update(model, optimizer, data, args)
        best = t.seconds if best is None else min(best, t.seconds)
    return {"seconds": best, "grad_norm": grad_norm}, num_params(model)


def run_verl(args: argparse.Namespace, data: DataProto, device: torch.device) -> tuple[dict[str, Any], int]:
    from verl.workers.actor import PPOActor
    from verl.workers.batching import BatchPlan
    from verl.workers.config import ActorConfig, FSDPConfig, MixedPrecisionConfig, OptimConfig
    from verl.workers.fsdp import apply_fsdp2, build_lr_scheduler, build_optimizer

    compute = "bf16" if args.dtype == "bfloat16" else "fp32"
    fsdp = FSDPConfig(reshard_after_forward=not args.no_reshard, mixed_precision=MixedPrecisionConfig(param_dtype=compute))
    model = apply_fsdp2(new_model(args, device, torch.float32), fsdp, world_size=1)  # fp32 master weights
    optim = OptimConfig(lr=LR)
    optimizer = build_optimizer(model, optim)
    steps = (args.repeats + 1) * args.num_sequences // args.mini_batch
    config = ActorConfig(ppo_mini_batch_size=args.mini_batch, ppo_micro_batch_size_per_gpu=args.micro_batch,
                         use_dynamic_bsz=args.dynamic_bsz, ppo_max_token_len_per_gpu=args.max_token_len,
                         entropy_coeff=args.entropy_coeff, use_kl_loss=args.kl_loss, optim=optim)
    actor = PPOActor(model, config, optimizer, build_lr_scheduler(optimizer, optim, steps),
                     packed=not args.no_remove_padding, dp_size=1)
    plan = BatchPlan.for_update("actor_rollout_ref.actor", args.mini_batch, 1, 1, args.micro_batch, args.dynamic_bsz,
                                args.max_token_len)
    log_prob_plan = BatchPlan.for_forward(args.micro_batch, args.dynamic_bsz, args.max_token_len)
    old_log_probs, _ = actor.compute_log_prob(data, log_prob_plan, temperature=1.0)  # not timed: an earlier phase
    data.batch["old_log_probs"] = old_log_probs
    data.batch["ref_log_prob"] = old_log_probs
    actor.update_policy(data[: args.mini_batch], plan, 1.0)  # warm-up
    best, metrics = None, {}
    for _ in range(args.repeats):
        with Timer() as t:
            metrics = actor.update_policy(data, plan, 1.0)
        best = t.seconds if best is None else min(best, t.seconds)
    from torch.distributed.fsdp import FSDPModule

    result = {"seconds": best, "grad_norm": metrics["actor/grad_norm"], "fsdp2": isinstance(model, FSDPModule)}
    return result, num_params(model)


def record_for(path: str, result: dict[str, Any], params: int, args: argparse.Namespace,
               device: torch.device) -> dict[str, Any]:
    tokens = args.num_sequences * (args.prompt_length + args.response_length)
    tokens_per_s = tokens / result["seconds"]
    peak = peak_flops()
    return {
        "benchmark": "train" + ("_tiny" if args.tiny else ""),
        "path": path,
        "device": describe_device(device),
        "dtype": args.dtype,
        "params": params,
        "num_sequences": args.num_sequences,
        "seq_len": args.prompt_length + args.response_length,
        "tokens": tokens,
        "optimizer_steps": args.num_sequences // args.mini_batch,
        "micro_batch": args.micro_batch,
        "gradient_checkpointing": args.gradient_checkpointing,
        "seconds": round(result["seconds"], 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(6 * params * tokens_per_s / peak, 4) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type != "cpu" else None,
        "grad_norm": result["grad_norm"],
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    device = torch.device("cpu") if args.tiny or not is_accelerator_available() else get_device()
    if device.type == "cpu" and args.dtype == "bfloat16":
        args.dtype = "float32"  # CPU runs of the full shape (smoke checks): FSDP2 computes in fp32 on CPU too
    created = init_one_rank_world(device)
    records = []
    try:
        for path in [p.strip() for p in args.paths.split(",")]:
            runners = {"transformers": run_transformers, "verl": run_verl}
            if path not in runners:
                raise SystemExit(f"unknown path {path!r}; use transformers and/or verl")
            if device.type != "cpu":
                torch.cuda.reset_peak_memory_stats(device)
            data = make_batch(args, (TINY_SHAPE if args.tiny else QWEN25_05B_SHAPE)["vocab_size"])
            result, params = runners[path](args, data, device)
            record = record_for(path, result, params, args, device)
            if path == "verl":
                record.update(fsdp2=result["fsdp2"], packed=not args.no_remove_padding, dynamic_bsz=args.dynamic_bsz,
                              reshard_after_forward=not args.no_reshard, entropy_coeff=args.entropy_coeff,
                              kl_loss=args.kl_loss)
                plain = next((r for r in records if r["path"] == "transformers"), None)
                if plain is not None:
                    record["speedup_vs_transformers"] = round(record["tokens_per_s"] / plain["tokens_per_s"], 2)
            emit(record)
            records.append(record)
            gc.collect()
            empty_cache()
    finally:
        if created:
            dist.destroy_process_group()
    return records


if __name__ == "__main__":
    main()
