"""``build_rollout``: the rollout named by the config, for a model module or a local HF checkpoint directory."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from verl.models.config import DecoderConfig, UnsupportedModelError
from verl.rollout.base import BaseRollout
from verl.rollout.config import RolloutConfig, rollout_config_from_mapping
from verl.utils.device import get_device
from verl.workers.parallel.groups import RankGroup

__all__ = ["build_rollout", "iter_checkpoint_tensors"]

logger = logging.getLogger(__name__)


def iter_checkpoint_tensors(path: str | os.PathLike, device: torch.device | str = "cpu",
                            read: Callable[[str, Any], torch.Tensor] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` pairs of an HF checkpoint directory, read from its ``*.safetensors`` files one tensor at a
    time (no transformers model is built). ``read(name, slice)`` picks what to read of each tensor from its
    safetensors slice (e.g. one tensor-parallel rank's rows); the whole tensor by default."""
    files = sorted(glob.glob(os.path.join(os.fspath(path), "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {os.fspath(path)!r}")
    from safetensors import safe_open

    for file in files:
        with safe_open(file, framework="pt", device=str(device)) as f:
            for name in f.keys():
                yield name, (f.get_tensor(name) if read is None else read(name, f.get_slice(name)))


def _load_hf_model(path: str, config: RolloutConfig, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, config.dtype))
    return model.to(device).eval()


def _generation_config(path: str) -> Any:
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:  # no generation_config.json: the model config's ids are used
        return None


def build_rollout(
    config: RolloutConfig | Mapping[str, Any],
    model: torch.nn.Module | str | os.PathLike,
    tokenizer: Any = None,
    device: torch.device | str | None = None,
    tensor_parallel: RankGroup | None = None,
) -> BaseRollout:
    """Build the ``actor_rollout_ref.rollout`` backend.

    Args:
        config: a :class:`RolloutConfig`, or a dict / omegaconf mapping of its keys (unknown keys raise with a
            close-match suggestion).
        model: a transformers causal LM module (its tensors are shared when dtype and device match) or the
            path of a local HF checkpoint directory.
        tokenizer: optional; its EOS / pad ids are the defaults of every call (``meta_info`` overrides them).
        device: where the rollout runs; the device helper's choice by default.
        tensor_parallel: this rank's tensor-parallel group (``rollout.tensor_model_parallel_size`` > 1): the native
            engine holds this rank's slice of the model, read sliced from the checkpoint; vLLM spans the group
            with its own tensor parallelism (its external launcher over the worker group's ranks, whose
            consecutive groups of this size are vLLM's tensor-parallel groups).

    ``name: native`` builds :class:`~verl.rollout.native.engine.NativeRollout` for Llama / Qwen2 / Qwen3 /
    Mistral models and falls back to ``hf`` (with a logged notice) for any other architecture. ``name: vllm``
    builds :class:`~verl.rollout.vllm.engine.VLLMRollout` from a checkpoint directory (vLLM loads models by path).
    """
    cfg = rollout_config_from_mapping(config)
    device = torch.device(device) if device is not None else get_device()
    is_path = isinstance(model, (str, os.PathLike))
    if is_path:
        if not os.path.isdir(model):
            raise FileNotFoundError(f"model path {os.fspath(model)!r} is not a local HF checkpoint directory")
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(model)
    elif isinstance(model, torch.nn.Module):
        hf_config = getattr(model, "config", None)
    else:
        raise TypeError(f"model must be a transformers causal-LM module or a checkpoint path, got {type(model)}")

    tp = tensor_parallel.size if tensor_parallel is not None else 1
    if tp > 1 and cfg.name not in ("native", "vllm"):
        raise ValueError(f"actor_rollout_ref.rollout.tensor_model_parallel_size={tp} is implemented by the native and "
                         f"vllm engines; set actor_rollout_ref.rollout.name=native (got {cfg.name!r})")
    if cfg.name == "vllm":
        if not is_path:
            raise TypeError("rollout name=vllm builds its engine from a checkpoint directory; pass the model path")
        from verl.rollout.vllm.engine import VLLMRollout

        return VLLMRollout(cfg, os.fspath(model), hf_config, tokenizer, _generation_config(os.fspath(model)), device,
                           tensor_parallel_size=tp)

    if cfg.name == "native":
        try:
            DecoderConfig.from_hf(hf_config)
        except UnsupportedModelError as err:
            if tp > 1:
                raise ValueError(f"actor_rollout_ref.rollout.tensor_model_parallel_size={tp} needs the native "
                                 f"engine, which cannot run this model: {err}") from None
            logger.warning("rollout name=native: %s; falling back to the hf backend (transformers.generate)", err)
        else:
            from verl.rollout.native.engine import NativeRollout
            from verl.rollout.native.tensor_parallel import checkpoint_slicer

            if is_path:
                has_safetensors = bool(glob.glob(os.path.join(os.fspath(model), "*.safetensors")))
                read = checkpoint_slicer(tensor_parallel) if tp > 1 else None
                weights = (iter_checkpoint_tensors(model, device, read) if has_safetensors
                           else _load_hf_model(os.fspath(model), cfg, torch.device("cpu")).state_dict().items())
                generation_config = _generation_config(os.fspath(model))
            else:
                weights, generation_config = model.state_dict().items(), getattr(model, "generation_config", None)
            return NativeRollout(cfg, hf_config, weights, tokenizer, generation_config, device, tensor_parallel)

    from verl.rollout.hf_rollout import HFRollout

    module = _load_hf_model(os.fspath(model), cfg, device) if is_path else model
    return HFRollout(cfg, module, tokenizer)
