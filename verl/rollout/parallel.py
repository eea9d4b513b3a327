"""Checks of ``actor_rollout_ref.rollout.tensor_model_parallel_size`` shared by the config validation (before any
worker starts) and the engines: which backends split a replica over ranks, and which models they can split.

The native engine's implementation is :mod:`verl.rollout.native.tensor_parallel`; vLLM uses its own tensor
parallelism (:class:`~verl.rollout.vllm.engine.VLLMRollout` with ``tensor_parallel_size``).
"""

from __future__ import annotations

from verl.models.config import SUPPORTED_MODEL_TYPES

__all__ = ["KEY", "check_tp_config", "check_tp_model", "check_tp_shape"]

KEY = "actor_rollout_ref.rollout.tensor_model_parallel_size"


def check_tp_shape(heads: int, kv_heads: int, intermediate_size: int, tp: int, key: str = KEY) -> None:
    """Query heads, key/value heads and MLP columns must divide by ``tp``; raises ``ValueError`` naming ``key``."""
    if tp < 1:
        raise ValueError(f"{key}={tp} must be >= 1")
    if heads % tp or kv_heads % tp:
        raise ValueError(f"{key}={tp} must divide the model's {heads} attention heads and {kv_heads} key/value "
                         f"heads (each rank computes heads / {key} of them); use a divisor of "
                         f"{kv_heads}")
    if intermediate_size % tp:
        raise ValueError(f"{key}={tp} must divide the model's MLP width intermediate_size={intermediate_size}")


def check_tp_config(tp: int, world: int, name: str, multi_turn: bool, key: str = KEY) -> None:
    """The checks of ``rollout.tensor_model_parallel_size`` that need no model (before any worker starts);
    raises ``ValueError`` naming ``key`` and the fix."""
    if tp < 1:
        raise ValueError(f"{key}={tp} must be >= 1")
    if tp == 1:
        return
    prefix = key.rsplit(".", 1)[0]
    if name not in ("native", "vllm"):
        raise ValueError(f"{key}={tp}: the {name} backend runs one full replica per rank; set {prefix}.name=native "
                         f"(or vllm) for tensor-parallel rollout")
    if world % tp:
        raise ValueError(f"{key}={tp} must divide the {world} ranks of the worker group (trainer.nnodes x "
                         f"trainer.n_gpus_per_node); rollout data-parallel size = ranks / {key}")
    if multi_turn:
        raise ValueError(f"{key}={tp} with {prefix}.multi_turn.enable=true: the ranks of a tensor-parallel group "
                         f"must run identical agent loops (tool results may differ per rank); set {key}=1")


def check_tp_model(hf_config, tp: int, name: str = "native", key: str = KEY) -> None:
    """A transformers config (or its ``config.json`` as a namespace) that backend ``name`` can split over ``tp``
    ranks: attention and key/value heads (and, for the native engine, the MLP width) divisible by ``tp``, and a
    model type the native engine implements; raises ``ValueError`` naming ``key``."""
    if tp == 1:
        return
    model_type = getattr(hf_config, "model_type", None)
    if name == "native" and model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{key}={tp} needs the native engine, which does not implement model_type {model_type!r} "
                         f"(supported: {list(SUPPORTED_MODEL_TYPES)}); set {key}=1")
    heads = hf_config.num_attention_heads
    mlp = hf_config.intermediate_size if name == "native" else tp  # vLLM checks its own layers
    check_tp_shape(heads, getattr(hf_config, "num_key_value_heads", None) or heads, mlp, tp, key)
