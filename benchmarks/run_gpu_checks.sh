#!/usr/bin/env bash
# Every GPU check the issues name, in one go, for a session that has a GPU (one H100 or H200).
# Prints the GPU tests' result and one JSON line per benchmark; copy the numbers into docs/performance.md
# with the device and the date.
#   bash benchmarks/run_gpu_checks.sh            (from the repo root, in an environment with verl installed)
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
echo "== GPU tests (bf16 parity, CUDA graphs, sleep() frees memory, offload placement)"
python -m pytest -q -m gpu tests
echo "== rollout: native vs hf, 64 prompts x n=8, 128 + 256 tokens (goal: >= 100k tok/s and >= 5x hf)"
python benchmarks/rollout.py
echo "== train: actor update on 512 x 384 tokens vs a plain transformers loop (goal: >= 1.5x)"
python benchmarks/train.py
echo "== grpo_step: one whole GRPO step (needs Ray; goal: >= 2x TRL's ~16k completion tok/s)"
python benchmarks/grpo_step.py
