"""Each rank reads only its own shards of a model's weights from the checkpoint's safetensors files.

The model is built on the meta device (no memory), split (tensor parallelism) and sharded (FSDP2) there, then
materialised empty on the rank's device; every parameter is now a DTensor whose placements say which block of the
full tensor this rank holds. :func:`load_local_shards` works that block out from the placements and reads just
those rows/columns with safetensors' ``get_slice`` (the files are memory-mapped; only the pages of the block are
touched). So the host never holds more than each rank's shards: on 2 ranks about one model's worth in all,
instead of one full copy per rank (or a full copy on rank 0 while it sends).

Weights the checkpoint lacks (a critic's fresh value head) are drawn in full from ``fsdp_config.seed`` on every
rank, exactly as a plain load draws them, and sliced. Non-persistent buffers (rotary frequencies) are recomputed
by the model's own ``_init_weights``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = ["deterministic_init", "load_local_shards", "local_block", "safetensors_index"]


def safetensors_index(path: str) -> dict[str, str] | None:
    """``{checkpoint tensor name: file}`` of a transformers checkpoint directory, or None without safetensors."""
    index_file = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index_file):
        with open(index_file) as f:
            return {name: os.path.join(path, file) for name, file in json.load(f)["weight_map"].items()}
    single = os.path.join(path, "model.safetensors")
    if not os.path.isfile(single):
        return None
    from safetensors import safe_open

    with safe_open(single, framework="pt") as f:
        return {name: single for name in f.keys()}


def _chunk(length: int, parts: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of chunk ``index`` when ``torch.chunk`` splits ``length`` into ``parts`` (what DTensor's
    ``Shard`` and FSDP2 do: chunks of ``ceil(length / parts)``, the last ones shorter or empty)."""
    size = -(-length // parts)
    start = min(index * size, length)
    return start, min(start + size, length)


def local_block(tensor: torch.Tensor) -> tuple[slice, ...]:
    """The block of the full tensor that this rank's local part of ``tensor`` (a DTensor, or a plain tensor: the
    whole of it) holds, as one slice per dimension.

    Placements apply mesh dimension by mesh dimension, each splitting the block left by the previous ones,
    except ``_StridedShard`` (FSDP2 sharding a dimension tensor parallelism already split), which applies after
    the placements to its right.
    """
    from torch.distributed.tensor import DTensor

    bounds = [(0, n) for n in tensor.shape]
    if not isinstance(tensor, DTensor):
        return tuple(slice(*b) for b in bounds)
    mesh, placements = tensor.device_mesh, tensor.placements
    coordinate = mesh.get_coordinate()
    strided = [i for i, p in enumerate(placements) if type(p).__name__ == "_StridedShard"]
    order = [i for i in range(len(placements)) if i not in strided] + strided
    for i in order:
        placement = placements[i]
        if getattr(placement, "dim", None) is not None:  # Shard or _StridedShard (Replicate/Partial: the whole)
            lo, hi = bounds[placement.dim]
            start, stop = _chunk(hi - lo, mesh.size(i), coordinate[i])
            bounds[placement.dim] = (lo + start, lo + stop)
    block = tuple(slice(*b) for b in bounds)
    expected = tuple(b.stop - b.start for b in block)
    if expected != tuple(tensor.to_local().shape):
        raise RuntimeError(f"cannot locate this rank's shard: placements {placements} give a {expected} block, the "
                           f"local tensor is {tuple(tensor.to_local().shape)}")
    return block


def deterministic_init(shapes: dict[str, Sequence[int]], seed: int, std: float) -> Iterator[tuple[str, torch.Tensor]]:
    """Full fp32 values for weights a checkpoint lacks, in name order from one generator seeded ``seed``: biases
    zero, others normal with ``std`` (the same values on every rank and in every process layout)."""
    generator = torch.Generator().manual_seed(seed)
    for name in sorted(shapes):
        if name.endswith("bias"):
            yield name, torch.zeros(shapes[name])
        else:
            yield name, torch.randn(tuple(shapes[name]), generator=generator, dtype=torch.float32) * std


def _checkpoint_name(name: str, index: dict[str, str], prefix: str) -> str | None:
    """The checkpoint's name for a model parameter (a base-model checkpoint lacks the ``prefix.`` of a model with a
    head, and the other way round)."""
    candidates = [name]
    if prefix and name.startswith(prefix + "."):
        candidates.append(name[len(prefix) + 1:])
    elif prefix:
        candidates.append(f"{prefix}.{name}")
    return next((c for c in candidates if c in index), None)


@torch.no_grad()
def load_local_shards(model: nn.Module, index: dict[str, str], seed: int) -> list[str]:
    """Fill this rank's shards of a sharded, materialised (``to_empty``) ``model`` from the safetensors files of
    ``index`` (:func:`safetensors_index`); returns the names initialised from ``seed`` instead (missing from the
    checkpoint). Non-persistent buffers are recomputed."""
    from safetensors import safe_open

    prefix = getattr(model, "base_model_prefix", "")
    params = dict(model.named_parameters())  # tied weights appear once (unless a meta build untied them)
    found = {name: _checkpoint_name(name, index, prefix) for name in params}
    for output, source in _tied_embeddings(model).items():  # a tied output head is saved as the input embedding
        if found.get(output) is None and output in params:
            found[output] = _checkpoint_name(source, index, prefix)
    by_file: dict[str, list[str]] = {}
    for name, key in found.items():
        if key is not None:
            by_file.setdefault(index[key], []).append(name)
    for file, names in by_file.items():
        with safe_open(file, framework="pt") as f:
            for name in names:
                param = params[name]
                local = param.to_local() if hasattr(param, "to_local") else param
                block = f.get_slice(found[name])[local_block(param)]
                local.copy_(block)
                del block
    missing = sorted(name for name, key in found.items() if key is None)
    body = [name for name in missing if prefix and name.startswith(prefix + ".")]
    if body:  # only a fresh head may be missing; a body weight missing means the names do not map 1:1
        raise ValueError(f"the checkpoint ({sorted(set(index.values()))[0]}...) has no tensor for {body[:3]} "
                         f"({len(body)} weights of the model body): its tensor names differ from "
                         f"{type(model).__name__}'s; save it with transformers' save_pretrained")
    std = getattr(model.config, "initializer_range", 0.02)
    for name, full in deterministic_init({n: params[n].shape for n in missing}, seed, std):
        param = params[name]
        local = param.to_local() if hasattr(param, "to_local") else param
        local.copy_(full[local_block(param)])
    _recompute_buffers(model)
    return missing


def _tied_embeddings(model: nn.Module) -> dict[str, str]:
    """``{output head weight: input embedding weight}`` when the config ties them, else empty."""
    if not getattr(model.config, "tie_word_embeddings", False) or not hasattr(model, "get_output_embeddings"):
        return {}
    heads = (model.get_output_embeddings(), model.get_input_embeddings())
    names = [next((f"{n}.weight" for n, m in model.named_modules() if m is head), None) for head in heads]
    return {names[0]: names[1]} if None not in names else {}


def _recompute_buffers(model: nn.Module) -> None:
    """Non-persistent buffers (rotary ``inv_freq``) are not in the checkpoint and were built on the meta device:
    transformers' ``_init_weights`` recomputes them from the config for the modules that own them."""
    init = getattr(model, "_init_weights", None)
    for module in model.modules():
        if any(True for _ in module.buffers(recurse=False)):
            if any(True for _ in module.parameters(recurse=False)) or init is None:
                raise NotImplementedError(f"cannot recompute the buffers of {type(module).__name__} after a meta "
                                          "build; load this model with every rank reading the checkpoint")
            init(module)
