"""The one place that loads, wraps and checkpoints models: FSDP2, mixed precision, offload, optimizers.

Models are plain transformers modules; this module applies ``fully_shard`` to each decoder layer and then
to the root (so tied embeddings stay in one group), over a device mesh of the worker group's ranks (with tensor
parallelism, over the data-parallel dimension of a ``(fsdp, tp)`` mesh after the layers are split, see
:mod:`verl.workers.parallel.tensor_parallel`). Each rank reads only its own shards of the checkpoint
(:mod:`verl.workers.sharded_loading`).
Checkpoints use torch.distributed.checkpoint (one shard file per rank, readable without a process group).
"""

from __future__ import annotations

import importlib
import math
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from verl.utils.device import get_device_name
from verl.workers.config import FSDPConfig, OptimConfig

__all__ = [
    "apply_fsdp2",
    "build_lr_scheduler",
    "build_optimizer",
    "build_sharded_model",
    "full_state_dict_iter",
    "load_checkpoint",
    "load_hf_model",
    "offload_model",
    "offload_optimizer",
    "save_checkpoint",
]

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32}


def to_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(DTYPES)}") from None


# ------------------------------------------------------------------------------------------------ loading


def load_hf_model(
    path: str,
    kind: str = "causal_lm",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    override_config: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    external_lib: str | None = None,
    gradient_checkpointing: bool = False,
    init_seed: int = 0,
    on_meta: bool = False,
) -> nn.Module:
    """Load a transformers model from a local directory.

    ``kind="causal_lm"`` gives the LM; ``kind="value"`` a token-classification model with one output per
    token on the same body (critic / reward model), its head freshly initialised (from ``init_seed``) when the
    checkpoint is a LM. ``on_meta``: the same model built on the meta device (no memory, no weights read).
    """
    import transformers

    if external_lib:
        importlib.import_module(external_lib)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model path {path!r} is not a local directory with a transformers checkpoint")
    config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if kind == "value":  # the token-classification head's dropout would make value targets noisy (0.1 by default)
        config.classifier_dropout = 0.0
    override_config = dict(override_config or {})
    # verl takes the attention implementation from ``model.override_config.attn_implementation``: it wins
    attn_implementation = override_config.pop("attn_implementation", attn_implementation)
    for key, value in override_config.items():
        setattr(config, key, value)
    if kind == "causal_lm":
        auto_cls = transformers.AutoModelForCausalLM
    elif kind == "value":
        config.num_labels = 1
        auto_cls = transformers.AutoModelForTokenClassification
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    dtype_kw = "dtype" if _transformers_takes_dtype() else "torch_dtype"
    if on_meta:
        with torch.device("meta"):
            model = auto_cls.from_config(config, trust_remote_code=trust_remote_code,
                                         attn_implementation=attn_implementation, **{dtype_kw: dtype})
    else:
        model, info = auto_cls.from_pretrained(
            path, config=config, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation,
            output_loading_info=True, **{dtype_kw: dtype},
        )
        _init_missing_deterministically(model, info.get("missing_keys", []), init_seed)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model


def _init_missing_deterministically(model: nn.Module, names: list[str], seed: int = 0) -> None:
    """Initialise weights the checkpoint lacks (a fresh value head) from a fixed seed, so every rank and every
    process layout starts from the same model (transformers would use each process's own RNG state)."""
    from verl.workers.sharded_loading import deterministic_init

    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for name, value in deterministic_init({n: model.get_parameter(n).shape for n in names}, seed, std):
            model.get_parameter(name).copy_(value)


def _transformers_takes_dtype() -> bool:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return (major, minor) >= (4, 56)


# ------------------------------------------------------------------------------------------------ FSDP2


def build_mesh(world_size: int, fsdp_size: int, tp_size: int = 1):
    """A 1-D mesh (pure sharding) or, with ``0 < fsdp_size < world_size``, a 2-D (replicate, shard) mesh (HSDP);
    with ``tp_size > 1`` a 2-D ``(fsdp, tp)`` mesh whose ``tp`` groups are consecutive ranks
    (:mod:`verl.workers.parallel.tensor_parallel`)."""
    from torch.distributed.device_mesh import init_device_mesh

    device = get_device_name()
    if tp_size > 1:
        if world_size % tp_size:
            raise ValueError(f"tensor_model_parallel_size={tp_size} must divide the {world_size} ranks of the worker group")
        if 0 < fsdp_size < world_size // tp_size:
            raise ValueError(f"fsdp_config.fsdp_size={fsdp_size} (HSDP) together with tensor parallelism is not "
                             "available; leave fsdp_size=-1")
        return init_device_mesh(device, (world_size // tp_size, tp_size), mesh_dim_names=("fsdp", "tp"))
    if fsdp_size <= 0 or fsdp_size >= world_size:
        return init_device_mesh(device, (world_size,), mesh_dim_names=("fsdp",))
    if world_size % fsdp_size:
        raise ValueError(f"fsdp_config.fsdp_size={fsdp_size} must divide the {world_size} ranks of the worker group")
    return init_device_mesh(device, (world_size // fsdp_size, fsdp_size), mesh_dim_names=("ddp", "fsdp"))


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks FSDP shards one by one (transformers names their classes in ``_no_split_modules``)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"cannot find decoder layers of {type(model).__name__}: set _no_split_modules on the model")
    return layers


def apply_fsdp2(model: nn.Module, fsdp_config: FSDPConfig, world_size: int, tp_size: int = 1,
                tp_key: str = "tensor_model_parallel_size") -> nn.Module:
    """Shard ``model`` in place with FSDP2 over the worker group (per decoder layer, then the root).

    On accelerators the forward runs in ``mixed_precision.param_dtype`` and gradients reduce in
    ``reduce_dtype``; on CPU everything stays fp32. With ``tp_size > 1`` the decoder layers are first split
    over tensor-parallel groups of ``tp_size`` ranks (``tp_key`` names the config key in errors) and FSDP shards
    over the remaining data-parallel ranks.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if not dist.is_initialized():
        if tp_size > 1:
            raise ValueError(f"{tp_key}={tp_size} needs a distributed worker group")
        return model
    mesh = build_mesh(world_size, fsdp_config.fsdp_size, tp_size)
    if tp_size > 1:
        from verl.workers.parallel.tensor_parallel import apply_tensor_parallel

        apply_tensor_parallel(model, mesh["tp"], decoder_layers(model), tp_key)
        mesh = mesh["fsdp"]
    kwargs: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": fsdp_config.reshard_after_forward}
    if get_device_name() != "cpu":
        mp = fsdp_config.mixed_precision
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=to_dtype(mp.param_dtype), reduce_dtype=to_dtype(mp.reduce_dtype))
    layers = decoder_layers(model)
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    if fsdp_config.forward_prefetch:  # all-gather the next layer's weights while this one computes
        for layer, nxt in zip(layers, layers[1:]):
            layer.set_modules_to_forward_prefetch([nxt])
    return model


def full_state_dict_iter(model: nn.Module, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` pairs of the model's weights, gathered one at a time from FSDP shards.

    With ``dtype`` each shard is cast before its gather, so a bf16 rollout moves half the bytes of the fp32
    master weights. Every rank must consume the iterator in full (each gather is a collective).
    """
    for name, tensor in model.state_dict().items():
        if dtype is not None:
            tensor = tensor.to(dtype)
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        yield name, tensor


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm across shards; returns the pre-clip norm (a plain tensor)."""
    groups: dict[Any, list[nn.Parameter]] = {}  # by device mesh: tensor parallelism puts parameters on two meshes
    for p in model.parameters():
        if p.grad is not None:
            groups.setdefault(getattr(p, "device_mesh", None), []).append(p)
    if len(groups) <= 1:
        norm = torch.nn.utils.clip_grad_norm_([p for ps in groups.values() for p in ps], max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    norms = []
    for params in groups.values():
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        norms.append(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    total = torch.linalg.vector_norm(torch.stack(norms))
    for params in groups.values():
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


# ------------------------------------------------------------------------------------------------ offload


def offload_model(model: nn.Module, to_cpu: bool, device: torch.device) -> None:
    """Move (sharded) parameters and gradients to CPU, or back to ``device``."""
    model.to("cpu" if to_cpu else device)


def offload_optimizer(optimizer: torch.optim.Optimizer, to_cpu: bool, device: torch.device) -> None:
    target = torch.device("cpu") if to_cpu else device
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(target, non_blocking=True)


# ------------------------------------------------------------------------------------------------ optimizer


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """``optim.optimizer`` from ``optim.optimizer_impl`` (AdamW from torch.optim by default) over the trainable
    parameters; ``override_optimizer_config`` adds or replaces constructor arguments."""
    from verl.trainer.config.features import optimizer_class

    params = [p for p in model.parameters() if p.requires_grad]
    cls = optimizer_class(optim)
    kwargs = {"lr": optim.lr, "weight_decay": optim.weight_decay}
    if cls.__name__.startswith("Adam"):  # betas/eps are Adam-family arguments
        kwargs.update(betas=tuple(optim.betas), eps=optim.eps)
    kwargs.update(optim.override_optimizer_config or {})
    return cls(params, **kwargs)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then ``constant`` or ``cosine`` (down to ``min_lr_ratio``) over ``total_steps``."""
    warmup = optim.lr_warmup_steps
    if warmup < 0:
        warmup = int(optim.lr_warmup_steps_ratio * max(total_steps, 0))
    from verl.trainer.config.features import scheduler_type

    style = scheduler_type(optim)  # lr_scheduler_type, or its older spellings warmup_style / lr_decay_style
    if style not in ("constant", "cosine"):
        raise ValueError(f"optim.lr_scheduler_type={style!r}: use 'constant' or 'cosine'")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if style == "constant" or total_steps <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * optim.num_cycles * progress))
        return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ------------------------------------------------------------------------------------------------ checkpoints


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["accelerator"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "accelerator" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["accelerator"])


def save_checkpoint(
    path: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    lr_scheduler: Any | None,
    contents: list[str],
    rank: int,
    world_size: int,
    hf_save: tuple[Any, Any] | None = None,
    lora: Any = None,
    base_model_path: str | None = None,
) -> None:
    """Save the parts named in ``contents`` under ``path`` (every rank calls this).

    ``model``/``optimizer``: sharded, via torch.distributed.checkpoint (``path/model``, ``path/optim``);
    ``extra``: this rank's LR-scheduler and RNG state; ``hf_model``: full weights in ``path/huggingface``,
    written by rank 0. With ``hf_save`` = (config, tokenizer), rank 0 always writes those two into
    ``path/huggingface`` (what the model merger needs to rebuild the model). With ``lora`` (the
    :class:`verl.workers.lora.LoraSpec` the model was built with), rank 0 also writes the adapter in peft's format
    to ``path/lora_adapter`` (``base_model_path`` recorded in its config), and ``hf_model`` holds the merged
    weights. The caller makes the directory visible atomically.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    os.makedirs(path, exist_ok=True)
    if "model" in contents:
        dcp.save(get_model_state_dict(model), checkpoint_id=os.path.join(path, "model"))
    if "optimizer" in contents and optimizer is not None:
        dcp.save(get_optimizer_state_dict(model, optimizer), checkpoint_id=os.path.join(path, "optim"))
    if "extra" in contents:
        extra = {"lr_scheduler": lr_scheduler.state_dict() if lr_scheduler else None, "rng": _rng_state()}
        torch.save(extra, os.path.join(path, f"extra_state_world_size_{world_size}_rank_{rank}.pt"))
    config, tokenizer = hf_save or (None, None)
    hf_dir = os.path.join(path, "huggingface")
    if "hf_model" in contents:
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            save_hf_directory(hf_dir, _merged_if_lora(model, full), config, tokenizer)
    elif rank == 0 and hf_save is not None:
        os.makedirs(hf_dir, exist_ok=True)
        config.save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
    if lora is not None:  # every rank joins the gathers; rank 0 writes
        from verl.workers.lora import ADAPTER_DIR, adapter_state_dict, save_adapter

        adapters = adapter_state_dict(full_state_dict_iter(model))
        if rank == 0:
            save_adapter(os.path.join(path, ADAPTER_DIR), adapters, lora.peft_config(), base_model_path)
    if dist.is_initialized():
        dist.barrier()


def _merged_if_lora(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LoRA model's full state dict as the base model's names with the adapters merged (what
    ``hf_model`` exports); any other model's as it is."""
    from verl.workers.lora import has_lora, merged_weights_iter

    return dict(merged_weights_iter(iter(state_dict.items()), model)) if has_lora(model) else state_dict


def save_hf_directory(path: str, state_dict: dict[str, torch.Tensor], config: Any, tokenizer: Any) -> None:
    """A directory ``AutoModel*.from_pretrained`` loads: config, safetensors weights, tokenizer."""
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    if config is not None:
        config.save_pretrained(path)
    tied = getattr(config, "tie_word_embeddings", False)
    tensors = {k: v.contiguous() for k, v in state_dict.items() if not (tied and k == "lm_head.weight")}
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def load_checkpoint(
    path: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    lr_scheduler: Any | None,
    contents: list[str],
    rank: int,
    world_size: int,
) -> None:
    """Restore what :func:`save_checkpoint` wrote (same world size for ``extra``)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint directory {path}")
    if "model" in contents:
        state = get_model_state_dict(model)
        dcp.load(state, checkpoint_id=os.path.join(path, "model"))
        set_model_state_dict(model, state)
    if "optimizer" in contents and optimizer is not None:
        state = get_optimizer_state_dict(model, optimizer)
        dcp.load(state, checkpoint_id=os.path.join(path, "optim"))
        set_optimizer_state_dict(model, optimizer, state)
    if "extra" in contents:
        file = os.path.join(path, f"extra_state_world_size_{world_size}_rank_{rank}.pt")
        if not os.path.exists(file):
            raise FileNotFoundError(f"{file} is missing: the checkpoint was saved with a different number of ranks")
        extra = torch.load(file, weights_only=False)
        if lr_scheduler is not None and extra["lr_scheduler"] is not None:
            lr_scheduler.load_state_dict(extra["lr_scheduler"])
        _set_rng_state(extra["rng"])


def build_sharded_model(model_cfg: Any, kind: str, fsdp_config: FSDPConfig, world_size: int, device: torch.device,
                        train: bool, path: str | None = None, lora: Any = None, tp_size: int = 1,
                        tp_key: str = "tensor_model_parallel_size") -> nn.Module:
    """Load a model section's checkpoint and shard it over the worker group (``tp_size > 1``: tensor-parallel
    groups of that many ranks times FSDP, see :func:`apply_fsdp2`).

    Trained models keep ``fsdp_config.model_dtype`` master weights (fp32); frozen ones (reference, reward
    model) load in the compute dtype on accelerators and take no gradients. With ``lora`` (a
    :class:`verl.workers.lora.LoraSpec`) the model gets LoRA adapters before sharding and only they train.
    """
    if train or get_device_name() == "cpu":
        dtype = to_dtype(fsdp_config.model_dtype) if train else torch.float32
    else:
        dtype = to_dtype(fsdp_config.mixed_precision.param_dtype)
    from verl.utils.fs import copy_to_local
    from verl.workers.sharded_loading import load_local_shards, safetensors_index

    if fsdp_config.full_determinism:  # bitwise-reproducible kernels (slower), as verl's fsdp_config.full_determinism
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    local_path = copy_to_local(path or model_cfg.path, use_shm=getattr(model_cfg, "use_shm", False))
    # Every rank builds the model on the meta device, shards it there and reads only its own shards from the
    # safetensors files. Without safetensors files only rank 0 reads the checkpoint and sends the other ranks
    # their shards. (LoRA wraps a real model: every rank loads it.)
    distributed = dist.is_initialized() and dist.get_world_size() > 1 and lora is None
    index = safetensors_index(local_path) if distributed else None
    if tp_size > 1 and (index is None or lora is not None):
        raise ValueError(f"{tp_key}={tp_size} needs a checkpoint in safetensors files and no LoRA "
                         f"(model.lora_rank=0); {local_path} has no model.safetensors" if index is None else
                         f"{tp_key}={tp_size} with LoRA (model.lora_rank > 0) is not available")
    broadcast = distributed and index is None
    on_meta = index is not None or (broadcast and dist.get_rank() != 0)
    model = load_hf_model(
        local_path,
        kind=kind,
        dtype=dtype,
        attn_implementation=getattr(model_cfg, "attn_implementation", "sdpa"),
        override_config=getattr(model_cfg, "override_config", None),
        trust_remote_code=getattr(model_cfg, "trust_remote_code", False),
        external_lib=getattr(model_cfg, "external_lib", None),
        gradient_checkpointing=train and getattr(model_cfg, "enable_gradient_checkpointing", False),
        init_seed=fsdp_config.seed,
        on_meta=on_meta,
    )
    if lora is not None:
        from verl.workers.lora import apply_lora

        model = apply_lora(model, lora)
    full = model.state_dict() if broadcast and not on_meta else {}  # rank 0: the full weights, kept until sent
    if not on_meta:
        model.to(device)
    if not train:
        model.requires_grad_(False)
        model.eval()
    model = apply_fsdp2(model, fsdp_config, world_size, tp_size, tp_key)
    if index is not None:
        model.to_empty(device=device)
        load_local_shards(model, index, fsdp_config.seed)
    elif broadcast:
        _shards_from_rank0(model, full, on_meta, device)
    return model


def _shards_from_rank0(model: nn.Module, full: dict[str, torch.Tensor], on_meta: bool, device: torch.device) -> None:
    """Fill every rank's shards of a sharded ``model`` from rank 0's ``full`` state dict (empty elsewhere; those
    ranks' models are on the meta device), one tensor at a time; buffers (rotary frequencies) are copied whole."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if on_meta:
        model.to_empty(device=device)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    full.clear()
    with torch.no_grad():
        for buffer in model.buffers():  # non-persistent buffers are not in the state dict
            dist.broadcast(buffer, src=0)
