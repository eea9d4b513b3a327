"""The one place that decides which accelerator to use, so no other module hard-codes a device string.

CUDA and ROCm builds of PyTorch both answer ``torch.cuda.is_available()``; everything else runs on CPU.
"""

from __future__ import annotations

import torch


def is_accelerator_available() -> bool:
    return torch.cuda.is_available()


def get_device_name() -> str:
    """``"cuda"`` on CUDA/ROCm machines, else ``"cpu"``."""  # device-ok
    return "cuda" if torch.cuda.is_available() else "cpu"  # device-ok


def get_device(local_rank: int = 0) -> torch.device:
    """The device this process computes on (``cuda:<local_rank>`` when there is one)."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())  # device-ok
    return torch.device("cpu")


def get_dist_backend(device_name: str | None = None) -> str:
    """torch.distributed backend for a device type: nccl (also RCCL on ROCm) on GPUs, gloo on CPU."""
    return "nccl" if (device_name or get_device_name()) == "cuda" else "gloo"  # device-ok


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def get_torch_device():
    """verl's name: the torch module of the current device type (``torch.cuda``, or ``torch.cpu`` without one)."""
    return getattr(torch, get_device_name())


def get_nccl_backend() -> str:
    """verl's name for :func:`get_dist_backend` of the current device (gloo on CPU, where verl would say nccl)."""
    return get_dist_backend()
