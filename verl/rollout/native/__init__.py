"""The native engine: static KV cache, continuous batching, prefix sharing, device sampling, CUDA graphs."""

from verl.rollout.native.engine import NativeRollout

__all__ = ["NativeRollout"]
