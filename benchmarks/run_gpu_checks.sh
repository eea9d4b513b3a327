#!/usr/bin/env bash
# Every GPU check in one run of at most ~7 minutes, for the GPU machine we test on (one H200: torch + CUDA,
# transformers, peft, accelerate, pyarrow, pandas, pytest; no Ray, omegaconf or datasets; no network).
# Parts (GPU tests, rollout / train / grpo_step benchmarks on the full workloads, a short GRPO run through
# main_ppo in local mode) run one after another, each with its own time limit; one JSON summary is written to
# gpu_checks_out/summary.json. Copy its figures into docs/performance.md with the device and the date.
#
#   bash benchmarks/run_gpu_checks.sh                       # on the GPU machine, from the repo root
#   bash benchmarks/run_gpu_checks.sh --wheels gpu_wheels   # first make the wheels in gpu_wheels/ importable
#   bash benchmarks/run_gpu_checks.sh --dry-run             # every part on tiny sizes on CPU, same code
#   bash benchmarks/run_gpu_checks.sh --only rollout,train --limit rollout=200
#
# verl runs from this checkout via PYTHONPATH. One package beyond that machine's is REQUIRED: tensordict
# (DataProto.batch is a TensorDict), with its pure dependencies pyvers and cloudpickle; tensordict 0.15.3 is a
# pure-Python wheel for torch >= 2.11 (the machine has 2.11) and pip --no-deps keeps its torch untouched. Without
# it gpu_checks.py stops at once, naming the wheels. Optional pure-Python wheels: pytest-timeout (honours
# pyproject's per-test timeout) and rich with markdown-it-py, mdurl, pygments (the console logger; the checks log
# to files). All go in one folder given as --wheels DIR (installed with pip --target into gpu_checks_out/site, the
# interpreter's own environment untouched). Fetch them on a machine with network:
#   pip download --only-binary=:all: --python-version 3.12 --platform any --no-deps -d gpu_wheels \
#       tensordict==0.15.3 pyvers==0.2.3 cloudpickle==3.1.2 \
#       pytest-timeout==2.4.0 rich==14.2.0 markdown-it-py==4.0.0 mdurl==0.1.2 pygments==2.19.2
# (about 3 MiB in all, tensordict's three 0.9 MiB; gpu_wheels/ is git-ignored, so bring it along as a carried
# path: run(carry=["gpu_wheels"]) with --wheels gpu_wheels). omegaconf is not needed: the config loader uses it
# only for ${...} interpolations, and its antlr4 dependency has no wheel.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec "$PY" benchmarks/gpu_checks.py "$@"
