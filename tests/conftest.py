"""Shared test set-up: GPU tests are skipped (never faked) where no accelerator is present."""

import os

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA/ROCm GPU; none present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
