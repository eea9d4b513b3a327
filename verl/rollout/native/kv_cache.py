"""The native engine's static KV cache: one contiguous row of ``T`` positions per sequence slot.

Layout ``(L, S, Hkv, T, D)`` (layers, slots, KV heads, positions, head dim), so the decode step of the first ``B``
slots reads ``cache[layer, :B]``: a view, no gather, the same address every step (what CUDA graphs need).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from verl.models.config import DecoderConfig

__all__ = ["KVCache", "plan_num_slots", "round_up"]


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


@dataclass
class KVCache:
    """Keys and values of every slot; ``k``/``v`` are ``(L, S, Hkv, T, D)``."""

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def allocate(cls, config: DecoderConfig, num_slots: int, max_len: int, device: torch.device | str,
                 dtype: torch.dtype) -> KVCache:
        shape = (config.num_layers, num_slots, config.num_kv_heads, max_len, config.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @staticmethod
    def bytes_per_slot(config: DecoderConfig, max_len: int, dtype: torch.dtype) -> int:
        elem = torch.empty(0, dtype=dtype).element_size()
        return 2 * config.num_layers * config.num_kv_heads * max_len * config.head_dim * elem

    @property
    def num_slots(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def move_slots(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """Copy the rows of slots ``src`` ``(M,)`` onto slots ``dst`` ``(M,)`` (compaction of the active set)."""
        self.k[:, dst] = self.k[:, src]
        self.v[:, dst] = self.v[:, src]


def plan_num_slots(
    config: DecoderConfig,
    max_len: int,
    dtype: torch.dtype,
    wanted: int,
    device: torch.device,
    gpu_memory_utilization: float,
) -> int:
    """How many sequence slots to allocate: ``wanted`` (``min(max_num_seqs, batch)``) capped by memory.

    On an accelerator the engine may fill ``gpu_memory_utilization`` of the device's total memory, counting
    what is already used (the weights among it); each slot costs its KV row plus its share of the per-step
    activations (float32 logits and sampling buffers over the vocabulary). On CPU the cap is ``wanted``.
    """
    if device.type == "cpu":
        return wanted
    free, total = torch.cuda.mem_get_info(device)  # CUDA and ROCm builds both answer here
    budget = int(total * gpu_memory_utilization) - (total - free)
    per_slot = KVCache.bytes_per_slot(config, max_len, dtype) + 6 * 4 * config.vocab_size
    slots = min(wanted, budget // per_slot) if budget > 0 else 0
    if slots < 1:
        raise RuntimeError(
            f"the KV cache does not fit: gpu_memory_utilization={gpu_memory_utilization} allows "
            f"{int(total * gpu_memory_utilization) / 2**30:.1f} GiB, {(total - free) / 2**30:.1f} GiB are already "
            f"in use and one sequence of {max_len} tokens needs {per_slot / 2**20:.1f} MiB; raise "
            "actor_rollout_ref.rollout.gpu_memory_utilization or free memory (offload the actor) before generating"
        )
    return slots
