"""``python -m verl.model_merger merge|test --backend fsdp --local_dir .../global_step_N/actor ...``.

``merge`` writes a transformers directory (``--target_dir``) from an FSDP checkpoint; ``test`` compares a
checkpoint's (or an already merged directory's) weights with a reference transformers directory
(``--test_hf_dir``) and exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from verl.model_merger.fsdp import (
    MergeConfig,
    ties_word_embeddings,
    load_model_config,
    compare_state_dicts,
    load_checkpoint_state_dict,
    load_hf_state_dict,
    merge_fsdp_checkpoint,
)

__all__ = ["build_parser", "main"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, choices=["fsdp", "megatron"],
                        help="training backend of the checkpoint (only fsdp is supported)")
    parser.add_argument("--local_dir", required=True,
                        help="checkpoint directory with model/ and huggingface/ (e.g. .../global_step_N/actor)")
    parser.add_argument("--hf_model_path", "--hf_model_config_path", dest="hf_model_config_path", default=None,
                        help="directory with config.json and tokenizer (default: <local_dir>/huggingface)")
    parser.add_argument("--tie-word-embedding", "--tie_word_embedding", dest="tie_word_embedding",
                        action="store_true", help="force tied input/output embeddings")
    parser.add_argument("--is-value-model", "--is_value_model", dest="is_value_model", action="store_true",
                        help="a critic / reward model (token-classification head with one label)")
    parser.add_argument("--trust-remote-code", "--trust_remote_code", dest="trust_remote_code", action="store_true",
                        help="allow model code shipped with the config")
    parser.add_argument("--use_cpu_initialization", action="store_true",
                        help="accepted for verl compatibility (merging always runs on CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m verl.model_merger", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="operation", required=True)
    merge = sub.add_parser("merge", help="write a transformers directory from a checkpoint")
    _common(merge)
    merge.add_argument("--target_dir", default="tmp", help="output directory (default: ./tmp)")
    merge.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                       help="weights dtype of the output (auto: as stored, fp32 master weights for trained models)")
    merge.add_argument("--max_shard_size_mb", type=float, default=5000, help="largest safetensors file, in MiB")
    merge.add_argument("--lora_adapter_only", action="store_true",
                       help="LoRA checkpoint: write only the adapter (peft format) to --target_dir; by default the "
                            "merged full model is written, with the adapter in <target_dir>/lora_adapter")
    merge.add_argument("--hf_upload_path", default=None, help="not supported here: upload the target directory "
                       "with `huggingface-cli upload`")
    merge.add_argument("--private", action="store_true", help="(with --hf_upload_path) not supported")
    test = sub.add_parser("test", help="compare a checkpoint or merged directory with a reference directory")
    _common(test)
    test.add_argument("--test_hf_dir", required=True, help="reference transformers directory")
    test.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance of the comparison")
    test.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance of the comparison")
    return parser


def _test(args: argparse.Namespace, cfg: MergeConfig) -> int:
    merged_dir = os.path.isfile(os.path.join(cfg.local_dir, "config.json")) and not os.path.isdir(
        os.path.join(cfg.local_dir, "model"))
    if merged_dir:  # an already merged transformers directory
        from transformers import AutoConfig

        tied = ties_word_embeddings(AutoConfig.from_pretrained(cfg.local_dir, trust_remote_code=cfg.trust_remote_code))
        merged = load_hf_state_dict(cfg.local_dir)
    else:
        tied = ties_word_embeddings(load_model_config(cfg))
        merged = load_checkpoint_state_dict(cfg.local_dir, tied)
    problems = compare_state_dicts(merged, load_hf_state_dict(args.test_hf_dir), tied, args.atol, args.rtol)
    if problems:
        print(f"FAILED: {len(problems)} difference(s) between {cfg.local_dir} and {args.test_hf_dir}:")
        for line in problems[:50]:
            print(f"  {line}")
        return 1
    print(f"OK: {len(merged)} tensors of {cfg.local_dir} match {args.test_hf_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.backend != "fsdp":
        print("error: only --backend fsdp is supported (this library trains with FSDP2)", file=sys.stderr)
        return 2
    cfg = MergeConfig(local_dir=args.local_dir, target_dir=getattr(args, "target_dir", None),
                      hf_model_config_path=args.hf_model_config_path, tie_word_embedding=args.tie_word_embedding,
                      is_value_model=args.is_value_model, dtype=getattr(args, "dtype", "auto"),
                      max_shard_size_mb=getattr(args, "max_shard_size_mb", 5000), trust_remote_code=args.trust_remote_code,
                      lora_adapter_only=getattr(args, "lora_adapter_only", False))
    if args.operation == "test":
        return _test(args, cfg)
    if args.hf_upload_path:
        print("error: --hf_upload_path is not supported; merge, then run "
              "`huggingface-cli upload <repo> <target_dir>`", file=sys.stderr)
        return 2
    path = merge_fsdp_checkpoint(cfg)
    print(f"merged {cfg.local_dir} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
