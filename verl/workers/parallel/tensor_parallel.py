"""Tensor parallelism for training (Megatron-LM's layout, done with PyTorch DTensor), applied from outside the model.

The worker group is a 2-D device mesh ``(fsdp, tp)``: consecutive ranks form a tensor-parallel group (the ``tp``
dimension), and FSDP2 shards over the other dimension (the data-parallel ranks). Inside each decoder layer, as
Shoeybi et al. 2019 (Megatron-LM) and torchtitan do:

- ``q_proj``/``k_proj``/``v_proj`` and ``gate_proj``/``up_proj`` are split by output features
  (``ColwiseParallel``): each rank computes ``H / tp`` query heads, ``Hkv / tp`` key/value heads and
  ``intermediate / tp`` MLP columns from the full (replicated) hidden states;
- ``o_proj`` and ``down_proj`` are split by input features (``RowwiseParallel``): each rank's partial product is
  summed with one all-reduce, so every rank leaves the layer with the full hidden states.

So a layer costs two all-reduces forward (and two backward, from the column-parallel inputs). Attention itself
is untouched: transformers' attention reshapes the projections with ``view(..., -1, head_dim)``, so it sees
``H / tp`` and ``Hkv / tp`` heads (their ratio, ``num_key_value_groups``, is unchanged), and the packed attention
kernels of :mod:`verl.workers.attention` read the head counts from the tensors' shapes.

The embeddings, the norms and the output head (``lm_head`` or a critic's value head) stay replicated over the TP
group (sharded by FSDP over the data-parallel ranks only): the vocabulary projection is not split, so the log-prob
and entropy kernels see the full logits and need no vocabulary-parallel softmax. This costs memory (one full
embedding and head per TP group, in FSDP shards) but keeps every per-token computation exact and local.

TP ranks hold the same batch (data is dispatched once per TP group, as for Ulysses groups); their losses are
equal, and each one's backward fills its own weight shards, so FSDP averages gradients over the data-parallel
ranks only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from verl.workers.config_sections import MegatronConfig

__all__ = ["TP_PLAN", "apply_tensor_parallel", "check_tensor_parallel", "with_megatron_offload"]

#: decoder-layer submodule -> how it is split (Llama, Qwen2/3, Mistral: transformers' Llama-family layout)
TP_PLAN: dict[str, str] = {
    "self_attn.q_proj": "colwise", "self_attn.k_proj": "colwise", "self_attn.v_proj": "colwise",
    "self_attn.o_proj": "rowwise",
    "mlp.gate_proj": "colwise", "mlp.up_proj": "colwise", "mlp.down_proj": "rowwise",
}


def check_tensor_parallel(config: Any, tp_size: int, key: str) -> None:
    """The head counts and the MLP width of a transformers ``config`` must divide by ``tp_size``."""
    if tp_size <= 1:
        return
    config = getattr(config, "text_config", None) or config
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    intermediate = getattr(config, "intermediate_size", None)
    if heads is None or intermediate is None:
        raise ValueError(f"{key}={tp_size}: tensor parallelism supports Llama-family models (num_attention_heads, "
                         "intermediate_size in the config); this config has neither")
    from verl.rollout.parallel import check_tp_shape  # one shape check for training and rollout TP

    check_tp_shape(heads, kv_heads, intermediate, tp_size, key)


def apply_tensor_parallel(model: nn.Module, tp_mesh: Any, layers: list[nn.Module], key: str) -> None:
    """Split each decoder layer of ``model`` over ``tp_mesh`` (a 1-D device mesh) by :data:`TP_PLAN`, in place.

    Works on the meta device too (the parameters become DTensors that ``to_empty`` later materialises).
    """
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    check_tensor_parallel(model.config, tp_mesh.size(), key)
    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    for layer in layers:
        for name in TP_PLAN:
            try:
                module = layer.get_submodule(name)
            except AttributeError:
                module = None
            if not isinstance(module, nn.Linear):
                raise ValueError(f"{key}={tp_mesh.size()}: tensor parallelism supports Llama-family decoder layers "
                                 f"(linear {', '.join(TP_PLAN)}); {type(layer).__name__} has no linear {name}")
        parallelize_module(layer, tp_mesh, {name: styles[style]() for name, style in TP_PLAN.items()})


def with_megatron_offload(fsdp_config: Any, megatron: MegatronConfig) -> Any:
    """``fsdp_config`` with ``megatron.param_offload`` / ``optimizer_offload`` folded in (either one turns offload
    on); a new object, the config is not modified."""
    import dataclasses

    return dataclasses.replace(fsdp_config, param_offload=fsdp_config.param_offload or megatron.param_offload,
                               optimizer_offload=fsdp_config.optimizer_offload or megatron.optimizer_offload)
