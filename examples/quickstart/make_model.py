"""Step 2 of the quickstart: a byte-level BPE tokenizer with a ChatML template and a small Qwen2-style model
with random weights, both built offline and saved with ``save_pretrained``.

    python examples/quickstart/make_model.py --out_dir quickstart_out/base_model --hidden_size 128 --num_layers 2
"""

from __future__ import annotations

import argparse

from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default="quickstart_out/base_model")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tokenizer = build_tiny_tokenizer()
    path = build_tiny_model(args.out_dir, tokenizer, arch="qwen2", hidden_size=args.hidden_size,
                            num_layers=args.num_layers, num_heads=4, num_kv_heads=2,
                            intermediate_size=4 * args.hidden_size, seed=args.seed)
    print("wrote", path)
