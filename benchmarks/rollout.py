"""The ``rollout`` benchmark: generated tokens/s of the native engine, vLLM and the hf backend, same run.

Workload (DESIGN.md section 8): a Qwen2.5-0.5B-shaped model with random bf16 weights, 64 prompts of 128 tokens,
n = 8 samples each (512 sequences), exactly 256 response tokens (EOS ignored), sampling at temperature 1.
``--tiny`` runs the same code on a tiny model on CPU (8 prompts x 4 samples, 16 + 32 tokens, float32).

    python benchmarks/rollout.py            # the real workload (GPU)
    python benchmarks/rollout.py --tiny     # CPU smoke variant, run by the test suite

Prints one JSON line per backend; the native line carries ``speedup_vs_hf`` and ``speedup_vs_vllm`` when those
ran. vLLM runs when it is installed (it loads the same weights from a temporary checkpoint directory).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `verl` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Timer, build_model, describe_device, emit, random_prompts  # noqa: E402
from verl.rollout import RolloutConfig, build_rollout  # noqa: E402
from verl.utils.device import get_device  # noqa: E402

FULL = dict(num_prompts=64, n=8, prompt_length=128, response_length=256, dtype="bfloat16")
TINY = dict(num_prompts=8, n=4, prompt_length=16, response_length=32, dtype="float32")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU-sized workload (for tests)")
    p.add_argument("--backends", default=None,
                   help="comma-separated, run in this order (default hf,native plus vllm when it is installed)")
    p.add_argument("--num-prompts", type=int)
    p.add_argument("--n", type=int)
    p.add_argument("--prompt-length", type=int)
    p.add_argument("--response-length", type=int)
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--enforce-eager", action="store_true", help="native: no torch.compile / CUDA graphs")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per backend (the best is reported)")
    args = p.parse_args(argv)
    for key, value in (TINY if args.tiny else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.backends is None:
        args.backends = "hf,native" + (",vllm" if importlib.util.find_spec("vllm") is not None else "")
    return args


def run_backend(name: str, model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Build one backend, warm it up (compilation, graph capture), then time full generations."""
    config = RolloutConfig(
        name=name, dtype=args.dtype, prompt_length=args.prompt_length, response_length=args.response_length,
        ignore_eos=True, do_sample=True, temperature=1.0, n=args.n, max_num_seqs=args.num_prompts * args.n,
        max_num_batched_tokens=max(8192, args.num_prompts * args.prompt_length), gpu_memory_utilization=0.8,
        enforce_eager=args.enforce_eager,
    )
    with tempfile.TemporaryDirectory() as ckpt:
        if name == "vllm":  # vLLM loads by path: the same weights, saved once
            model.save_pretrained(ckpt)
            config.load_format = "auto"
        rollout = build_rollout(config, ckpt if name == "vllm" else model, device=device)
    try:
        return timed_run(name, rollout, model, args, device)
    finally:
        if hasattr(rollout, "close"):
            rollout.close()


def timed_run(name: str, rollout: Any, model: torch.nn.Module, args: argparse.Namespace,
              device: torch.device) -> dict[str, Any]:
    prompts = random_prompts(args.num_prompts, args.prompt_length, model.config.vocab_size).repeat(args.n)
    warm = prompts.select()
    warm.meta_info["response_length"] = 4  # full batch, so the decode graph of this batch size gets captured
    rollout.generate_sequences(warm)
    best = None
    for _ in range(args.repeats):
        with Timer() as t:
            out = rollout.generate_sequences(prompts)
        best = t.seconds if best is None else min(best, t.seconds)
    tokens = int(out.batch["response_mask"].sum())
    record = {
        "benchmark": "rollout" + ("_tiny" if args.tiny else ""),
        "backend": name,
        "engine": type(rollout).__name__,
        "device": describe_device(device),
        "dtype": args.dtype,
        "num_sequences": len(prompts),
        "prompt_length": args.prompt_length,
        "response_length": args.response_length,
        "generated_tokens": tokens,
        "seconds": round(best, 4),
        "tokens_per_s": round(tokens / best, 1),
    }
    if hasattr(rollout, "num_cuda_graphs"):
        record["cuda_graphs"] = rollout.num_cuda_graphs
    rollout.sleep()
    return record


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    device = torch.device("cpu") if args.tiny else get_device()
    if args.tiny:
        torch.manual_seed(0)
    model = build_model(args.tiny, getattr(torch, args.dtype), device)
    records = []
    for name in args.backends.split(","):
        records.append(run_backend(name.strip(), model, args, device))
    by_name = {r["backend"]: r for r in records}
    if "native" in by_name:
        for peer in ("hf", "vllm"):
            if peer in by_name:
                by_name["native"][f"speedup_vs_{peer}"] = round(
                    by_name["native"]["tokens_per_s"] / by_name[peer]["tokens_per_s"], 2)
    for record in records:
        emit(record)
    return records


if __name__ == "__main__":
    main()
