"""Merge an FSDP checkpoint (torch.distributed.checkpoint shards) into a transformers directory.

A checkpoint directory written by :func:`verl.workers.fsdp.save_checkpoint` (an actor, a critic, or an SFT
``global_step_N``) holds ``model/`` (the sharded state dict: one ``__<rank>_0.distcp`` file per rank plus
``.metadata``) and ``huggingface/`` (config and tokenizer). The shards are read without a process group, one
output shard of tensors at a time, and written as safetensors next to the config and tokenizer files.

A LoRA checkpoint (adapter tensors in ``model/`` and ``lora_adapter/`` in peft's format next to it) merges into the
full model, ``W + (lora_alpha / r) * B @ A`` under the base model's names, with the adapter copied to
``<target_dir>/lora_adapter``; ``lora_adapter_only`` exports just the adapter.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "MergeConfig",
    "checkpoint_tensor_specs",
    "compare_state_dicts",
    "is_lora_checkpoint",
    "iter_checkpoint_shards",
    "load_checkpoint_state_dict",
    "load_hf_state_dict",
    "load_model_config",
    "merge_fsdp_checkpoint",
    "ties_word_embeddings",
]

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".safetensors.index.json", ".bin.index.json")


@dataclass
class MergeConfig:
    """What ``python -m verl.model_merger merge|test`` was asked to do."""

    local_dir: str
    """The checkpoint directory (with ``model/`` and ``huggingface/``), e.g. ``.../global_step_N/actor``."""
    target_dir: str | None = None
    """Where the transformers directory goes (``merge``)."""
    hf_model_config_path: str | None = None
    """Directory with the model's ``config.json`` and tokenizer; default ``<local_dir>/huggingface``."""
    tie_word_embedding: bool = False
    """Force tied input/output embeddings (normally read from the config's ``tie_word_embeddings``)."""
    is_value_model: bool = False
    """The checkpoint is a value model (critic / reward model: a token-classification head with one label)."""
    dtype: str = "auto"
    """Weights dtype of the output: ``auto`` (as stored in the checkpoint), ``bfloat16``, ``float16``, ``float32``."""
    max_shard_size_mb: float = 5000
    """Largest safetensors file; bigger models are split with a ``model.safetensors.index.json``."""
    trust_remote_code: bool = False
    """Allow model code shipped with the config."""
    lora_adapter_only: bool = False
    """For a LoRA checkpoint: write only the adapter (peft's format) to ``target_dir``, not the merged model."""


def _clean(name: str) -> str:
    for prefix in _WRAPPERS:
        name = name.replace(prefix, "")
    return name


def _model_dir(local_dir: str) -> str:
    path = os.path.join(local_dir, "model")
    if not os.path.isfile(os.path.join(path, ".metadata")):
        raise FileNotFoundError(
            f"{local_dir} has no model/.metadata: not an FSDP checkpoint saved with 'model' in "
            "checkpoint.save_contents (expected <dir>/model/, <dir>/huggingface/, e.g. .../global_step_N/actor)"
        )
    return path


def checkpoint_tensor_specs(local_dir: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """``{stored name: (full shape, dtype)}`` of the tensors in ``<local_dir>/model`` (read from the metadata)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = FileSystemReader(_model_dir(local_dir)).read_metadata()
    return {name: (meta.size, meta.properties.dtype) for name, meta in metadata.state_dict_metadata.items()
            if isinstance(meta, TensorStorageMetadata)}


def _load_tensors(local_dir: str, specs: dict[str, tuple[torch.Size, torch.dtype]]) -> dict[str, torch.Tensor]:
    """Full tensors for ``specs`` (assembled from every rank's shard) from ``<local_dir>/model``."""
    import torch.distributed.checkpoint as dcp

    state = {name: torch.empty(shape, dtype=dtype) for name, (shape, dtype) in specs.items()}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process.*")
        dcp.load(state, checkpoint_id=_model_dir(local_dir), no_dist=True)
    return state


def _skip_lm_head(name: str, tied: bool) -> bool:
    return tied and _clean(name) == "lm_head.weight"


def is_lora_checkpoint(local_dir: str) -> bool:
    """Whether the checkpoint's model holds LoRA adapters."""
    from verl.workers.lora import is_lora_name

    return any(is_lora_name(name) for name in checkpoint_tensor_specs(local_dir))


def iter_checkpoint_shards(local_dir: str, tied: bool, max_shard_bytes: int,
                           dtype: torch.dtype | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """The checkpoint's weights, by HF name, in groups of at most ``max_shard_bytes`` (one tensor may exceed it).

    With ``tied``, ``lm_head.weight`` is left out (transformers re-ties it to the input embedding). A LoRA
    checkpoint's adapters are merged into their base weights (a layer's base and adapter tensors always land in
    one group).
    """
    from verl.workers.lora import ADAPTER_DIR, lora_module_of, read_adapter_scaling

    specs = {n: s for n, s in checkpoint_tensor_specs(local_dir).items() if not _skip_lm_head(n, tied)}
    modules = {m for m in map(lora_module_of, map(_clean, specs)) if m is not None}
    scalings = dict.fromkeys(modules, read_adapter_scaling(os.path.join(local_dir, ADAPTER_DIR))) if modules else {}
    group: dict[str, tuple[torch.Size, torch.dtype]] = {}
    size = 0
    for name, (shape, stored) in specs.items():
        nbytes = shape.numel() * (dtype or stored).itemsize
        layer = lora_module_of(_clean(name))
        within_layer = bool(group) and layer is not None and lora_module_of(_clean(next(reversed(group)))) == layer
        if group and size + nbytes > max_shard_bytes and not within_layer:
            yield _converted(local_dir, group, dtype, scalings)
            group, size = {}, 0
        group[name] = (shape, stored)
        size += nbytes
    if group:
        yield _converted(local_dir, group, dtype, scalings)


def _converted(local_dir: str, group: dict[str, tuple[torch.Size, torch.dtype]],
               dtype: torch.dtype | None, scalings: dict[str, float]) -> dict[str, torch.Tensor]:
    from verl.workers.lora import merged_weights_iter

    tensors = {_clean(name): t for name, t in _load_tensors(local_dir, group).items()}
    if scalings:  # merged in the stored (fp32 master) dtype, then cast
        tensors = dict(merged_weights_iter(iter(tensors.items()), scalings))
    return {name: (t.to(dtype) if dtype is not None else t).contiguous() for name, t in tensors.items()}


def load_checkpoint_state_dict(local_dir: str, tied: bool = False) -> dict[str, torch.Tensor]:
    """The whole checkpoint's weights by HF name (``lm_head.weight`` left out when ``tied``)."""
    out: dict[str, torch.Tensor] = {}
    for shard in iter_checkpoint_shards(local_dir, tied, max_shard_bytes=1 << 62):
        out.update(shard)
    return out


def load_hf_state_dict(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a transformers directory's ``*.safetensors`` files."""
    from verl.rollout.builder import iter_checkpoint_tensors

    return dict(iter_checkpoint_tensors(path))


def load_model_config(cfg: MergeConfig) -> Any:
    from transformers import AutoConfig

    path = cfg.hf_model_config_path or os.path.join(cfg.local_dir, "huggingface")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"no config.json in {path}; the checkpoint's huggingface/ directory is missing "
                                "(pass --hf_model_path with the original model's directory)")
    config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    if cfg.tie_word_embedding:
        config.tie_word_embeddings = True
    if cfg.is_value_model:
        config.num_labels = 1
        arch = (config.architectures or [""])[0]
        if arch and not arch.endswith("ForTokenClassification"):
            config.architectures = [arch.replace("ForCausalLM", "") + "ForTokenClassification"]
    return config


def ties_word_embeddings(config: Any) -> bool:
    return bool(getattr(config, "tie_word_embeddings", False))


def _check_names(config: Any, names: list[str], tied: bool, local_dir: str) -> None:
    arch = (getattr(config, "architectures", None) or [""])[0]
    if arch.endswith("ForCausalLM") and not tied and "lm_head.weight" not in names:
        raise ValueError(f"{local_dir}: the checkpoint has no lm_head.weight but the config does not tie word "
                         "embeddings; pass --tie-word-embedding if the model shares its input embedding")


def _copy_side_files(src: str, dst: str) -> None:
    """Tokenizer, generation config, chat template, custom code...: everything but config and weights."""
    if not os.path.isdir(src):
        return
    for name in os.listdir(src):
        full = os.path.join(src, name)
        if name == "config.json" or name.endswith(_WEIGHT_SUFFIXES) or not os.path.isfile(full):
            continue
        shutil.copy2(full, os.path.join(dst, name))


def merge_fsdp_checkpoint(cfg: MergeConfig) -> str:
    """Write ``cfg.target_dir``: config, safetensors weights (sharded past ``max_shard_size_mb``), tokenizer.

    Returns the target directory; ``AutoModelForCausalLM`` (or, for value models,
    ``AutoModelForTokenClassification``) ``.from_pretrained`` loads it.
    """
    from safetensors.torch import save_file

    from verl.workers.lora import ADAPTER_DIR, merged_name

    if not cfg.target_dir:
        raise ValueError("merge needs --target_dir")
    if cfg.dtype != "auto" and cfg.dtype not in DTYPES:
        raise ValueError(f"--dtype {cfg.dtype!r}: use auto or one of {sorted(DTYPES)}")
    specs = checkpoint_tensor_specs(cfg.local_dir)
    lora = is_lora_checkpoint(cfg.local_dir)
    if cfg.lora_adapter_only:
        if not lora:
            raise ValueError(f"--lora_adapter_only: {cfg.local_dir} is not a LoRA checkpoint (no adapter weights)")
        shutil.copytree(os.path.join(cfg.local_dir, ADAPTER_DIR), cfg.target_dir, dirs_exist_ok=True)
        return cfg.target_dir
    config = load_model_config(cfg)
    tied = ties_word_embeddings(config)
    _check_names(config, [n for n in map(merged_name, map(_clean, specs)) if n], tied, cfg.local_dir)
    dtype = DTYPES.get(cfg.dtype)
    os.makedirs(cfg.target_dir, exist_ok=True)
    for name in os.listdir(cfg.target_dir):  # stale weights from an earlier merge would be loaded too
        if name.startswith("model") and name.endswith(_WEIGHT_SUFFIXES):
            os.remove(os.path.join(cfg.target_dir, name))
    tmp_names, weight_map, total = [], {}, 0
    for i, shard in enumerate(iter_checkpoint_shards(cfg.local_dir, tied, int(cfg.max_shard_size_mb * 2**20), dtype)):
        tmp_names.append(f"shard-{i}.tmp")
        save_file(shard, os.path.join(cfg.target_dir, tmp_names[-1]), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, i))
        total += sum(t.numel() * t.element_size() for t in shard.values())
    n = len(tmp_names)
    files = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    for tmp, final in zip(tmp_names, files):
        os.replace(os.path.join(cfg.target_dir, tmp), os.path.join(cfg.target_dir, final))
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": {k: files[i] for k, i in sorted(weight_map.items())}}
        with open(os.path.join(cfg.target_dir, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
    _copy_side_files(cfg.hf_model_config_path or os.path.join(cfg.local_dir, "huggingface"), cfg.target_dir)
    if lora:  # the adapter too, for serving base + adapter
        shutil.copytree(os.path.join(cfg.local_dir, ADAPTER_DIR), os.path.join(cfg.target_dir, ADAPTER_DIR),
                        dirs_exist_ok=True)
    stored = next(iter(specs.values()))[1] if specs else torch.float32
    config.dtype = dtype or stored
    config.use_cache = True  # training configs switch the KV cache off; generation from the export wants it on
    config.save_pretrained(cfg.target_dir)
    return cfg.target_dir


def compare_state_dicts(merged: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], tied: bool,
                        atol: float, rtol: float) -> list[str]:
    """Differences between two state dicts (names, shapes, values in float32); empty when they match.

    With ``tied``, a ``lm_head.weight`` present on one side only is not a difference.
    """
    problems = []
    names = set(merged) | set(reference)
    if tied and ("lm_head.weight" in merged) != ("lm_head.weight" in reference):
        names.discard("lm_head.weight")
    for name in sorted(names):
        if name not in merged or name not in reference:
            problems.append(f"{name}: only in the {'reference' if name in reference else 'merged weights'}")
            continue
        a, b = merged[name], reference[name]
        if a.shape != b.shape:
            problems.append(f"{name}: shape {tuple(a.shape)} != reference {tuple(b.shape)}")
        elif not torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol):
            diff = (a.float() - b.float()).abs().max().item()
            problems.append(f"{name}: values differ (max abs diff {diff:.3e} > atol {atol:g} + rtol {rtol:g})")
    return problems
