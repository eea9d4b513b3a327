"""Optimizer-state + gradient memory of LoRA against full fine-tuning; one JSON line per row.

``--measure``: a small Qwen2-shaped model (random weights, built offline) takes one real AdamW step on CPU, and the
bytes of its gradients and optimizer state are summed from the tensors themselves (full fine-tuning, then LoRA).

``--shape qwen2.5-0.5b|qwen2.5-7b``: the real model shape is built on the meta device (no memory) and adapted with
peft exactly as the actor does; its parameter counts are read off the model, and the bytes follow from AdamW
keeping an fp32 gradient and two fp32 moments per trainable element (12 bytes; what ``--measure`` confirms).

    python benchmarks/lora_memory.py --measure --rank 16
    python benchmarks/lora_memory.py --shape qwen2.5-0.5b --rank 16
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

SHAPES = {  # transformers Qwen2Config fields of the public checkpoints
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, tie_word_embeddings=True),
    "qwen2.5-7b": dict(vocab_size=152064, hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, intermediate_size=18944, tie_word_embeddings=False),
}


def _spec(rank: int, alpha: float):
    from verl.workers.config import ModelConfig
    from verl.workers.lora import LoraSpec

    return LoraSpec.from_model_config(ModelConfig(lora_rank=rank, lora_alpha=alpha), "model")


def measured_bytes(model_dir: str, rank: int) -> tuple[int, int]:
    """(optimizer-state bytes, gradient bytes) after one AdamW step of the model as the actor builds it."""
    from verl.workers.config import FSDPConfig, ModelConfig, OptimConfig
    from verl.workers.fsdp import build_optimizer, build_sharded_model

    model = build_sharded_model(ModelConfig(path=model_dir), "causal_lm", FSDPConfig(), 1, torch.device("cpu"),
                                train=True, lora=_spec(rank, 2 * rank) if rank else None)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3))
    ids = torch.randint(3, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    state = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                if torch.is_tensor(v) and v.dim() > 0)
    return state, grads


def measure(rank: int) -> dict:
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(tmp, build_tiny_tokenizer(), hidden_size=256, num_layers=4, num_heads=4,
                                     num_kv_heads=2, intermediate_size=768)
        full, lora = measured_bytes(model_dir, 0), measured_bytes(model_dir, rank)
    return {"model": "qwen2 hidden 256, 4 layers, MLP 768, tiny vocab", "rank": rank, "measured": True,
            "full_state_plus_grad_bytes": sum(full), "lora_state_plus_grad_bytes": sum(lora),
            "ratio": round(sum(lora) / sum(full), 4)}


def by_shape(name: str, rank: int) -> dict:
    import transformers

    from verl.workers.lora import apply_lora, lora_summary

    config = transformers.Qwen2Config(**SHAPES[name])
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    summary = lora_summary(apply_lora(model, _spec(rank, 2 * rank)))
    base = summary.total - summary.trainable
    return {"model": name, "rank": rank, "measured": False, "params": base, "lora_params": summary.trainable,
            "full_state_plus_grad_gib": round(12 * base / 2**30, 2),
            "lora_state_plus_grad_gib": round(12 * summary.trainable / 2**30, 3),
            "ratio": round(summary.trainable / base, 4)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--measure", action="store_true", help="one real step on a small model")
    p.add_argument("--shape", choices=sorted(SHAPES), action="append", default=[], help="count on the meta device")
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.rank)))
    for name in args.shape:
        print(json.dumps(by_shape(name, args.rank)))


if __name__ == "__main__":
    main()
