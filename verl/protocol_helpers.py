"""DataProto's building blocks that do not need the class itself: its error type, the lazily imported
TensorDict, index normalisation, the byte-buffer pickling of tensors, deep equality and verl's union helpers.

Everything public here is re-exported by :mod:`verl.protocol` (verl's module for these names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from tensordict import TensorDict

__all__ = [
    "DataProtoError", "deserialize_single_tensor", "deserialize_tensordict", "list_of_dict_to_dict_of_list",
    "serialize_single_tensor", "serialize_tensordict", "to_object_array", "union_numpy_dict", "union_tensor_dict",
]  # fmt: skip

Index = int | slice | Sequence[int] | np.ndarray | torch.Tensor


class DataProtoError(ValueError, AssertionError):
    """A DataProto operation got data it cannot handle (mismatched lengths, uneven chunks, conflicting keys)."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise DataProtoError(message)


def _TensorDict() -> type:
    """``tensordict.TensorDict``, imported on first use: importing tensordict costs about as much as importing torch
    (it loads torch._dynamo), so ``import verl`` stays light until a DataProto is built."""
    from tensordict import TensorDict

    return TensorDict


def to_object_array(values: Iterable[Any]) -> np.ndarray:
    """A 1-D numpy object array holding ``values`` as they are (lists stay lists, not a 2-D array)."""
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    values = list(values)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _as_index(idx: Index, n: int) -> np.ndarray | slice:
    """Normalise an index (slice, int sequence, bool mask, tensor) into a slice or an int64 array."""
    if isinstance(idx, slice):
        return idx
    if isinstance(idx, torch.Tensor):
        idx = idx.detach().cpu().numpy()
    idx = np.asarray(idx)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean mask has shape {idx.shape}, expected ({n},)")
        return np.nonzero(idx)[0]
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"index must be a 1-D integer or boolean array, got dtype {idx.dtype} shape {idx.shape}")
    if idx.max() >= n or idx.min() < -n:
        raise IndexError(f"index {int(idx.max() if idx.max() >= n else idx.min())} out of range for length {n}")
    return idx.astype(np.int64)


def _tensor_dict(tensors: Mapping[str, torch.Tensor], n: int | None, num_batch_dims: int = 1) -> TensorDict:
    """A TensorDict of ``tensors``; every tensor's leading ``num_batch_dims`` dims must agree (named if not)."""
    batch_size = None if n is None else (n,)
    pivot = None
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"batch[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
        _require(value.dim() >= num_batch_dims, f"batch[{key!r}] has shape {tuple(value.shape)}; batch tensors need "
                 f"{num_batch_dims} leading batch dimension(s)")
        lead = tuple(value.shape[:num_batch_dims])
        if batch_size is None:
            batch_size, pivot = lead, key
        _require(lead == batch_size, f"batch[{key!r}] has {lead[0] if num_batch_dims == 1 else lead} rows but "
                 f"{'batch[' + repr(pivot) + ']' if pivot else 'the batch'} has "
                 f"{batch_size[0] if num_batch_dims == 1 else batch_size}")
    return _TensorDict()(dict(tensors), batch_size=batch_size or (0,))


# ---------------------------------------------------------------------------------------------------------------
# Pickling: tensors travel as flat byte buffers (numpy arrays), which pickle protocol 5 and Ray's object
# store send out-of-band without copying through Python objects.


def serialize_single_tensor(t: torch.Tensor) -> tuple[str, tuple[int, ...], np.ndarray]:
    """``(dtype name, shape, flat uint8 array of its bytes)``; the array shares the (CPU, contiguous) tensor's memory."""
    t = t.detach().to("cpu").contiguous()
    flat = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
    return str(t.dtype).removeprefix("torch."), tuple(t.shape), flat.numpy()


def deserialize_single_tensor(encoded: tuple[str, tuple[int, ...], Any]) -> torch.Tensor:
    dtype, shape, data = encoded
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if not buf.flags.writeable:  # Ray hands out read-only views of its shared memory
        buf = buf.copy()
    return torch.from_numpy(buf).view(getattr(torch, dtype)).reshape(shape)


def serialize_tensordict(batch: TensorDict) -> tuple[tuple[int, ...], str | None, dict[str, tuple]]:
    """``(batch_size, device, {key: encoded tensor})``; a nested tensor is ``(layout, [encoded component...])``."""
    items = {}
    for key, value in batch.items():
        if value.is_nested:
            items[key] = (str(value.layout).removeprefix("torch."), [serialize_single_tensor(t) for t in value.unbind()])
        else:
            items[key] = serialize_single_tensor(value)
    return tuple(batch.batch_size), (str(batch.device) if batch.device is not None else None), items


def deserialize_tensordict(encoded: tuple) -> TensorDict:
    """The inverse of :func:`serialize_tensordict` (tensors land on the CPU; ``device`` records where they were)."""
    batch_size, device, items = encoded
    tensors = {}
    for key, value in items.items():
        if len(value) == 3:
            tensors[key] = deserialize_single_tensor(value)
        elif len(value) == 2:
            layout, parts = value
            tensors[key] = torch.nested.as_nested_tensor([deserialize_single_tensor(p) for p in parts],
                                                         layout=getattr(torch, layout))
        else:
            raise DataProtoError(f"tensor {key!r}: encoding has {len(value)} fields, expected 2 (nested) or 3")
    return _TensorDict()(tensors, batch_size=batch_size, device="cpu" if device == "cpu" else None)


# ---------------------------------------------------------------------------------------------------------------
# Equality and verl's union helpers.


def _values_equal(a: Any, b: Any, _path: frozenset[int] = frozenset()) -> bool:
    """Deep equality for meta_info values and non-tensor cells: arrays element by element, NaN equal to NaN, and a
    container met again inside itself (a cycle) counted as equal."""
    if id(a) in _path:
        return type(a) is type(b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype != object:
            return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        inner = _path | {id(a)}
        return all(_values_equal(x, y, inner) for x, y in zip(a.flat, b.flat))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return a is b


def union_tensor_dict(tensor_dict1: TensorDict, tensor_dict2: TensorDict) -> TensorDict:
    """Add ``tensor_dict2``'s tensors to ``tensor_dict1`` (in place); shared keys must hold equal tensors."""
    _require(tensor_dict1.batch_size == tensor_dict2.batch_size, "cannot union batches of sizes "
             f"{list(tensor_dict1.batch_size)} and {list(tensor_dict2.batch_size)}")
    for key, value in tensor_dict2.items():
        _require(key not in tensor_dict1.keys() or _values_equal(tensor_dict1[key], value),
                 f"union conflict: tensor {key!r} differs between the two DataProtos "
                 f"({key} in tensor_dict1 and tensor_dict2 are not the same object)")
        tensor_dict1[key] = value
    return tensor_dict1


def union_numpy_dict(tensor_dict1: dict[str, np.ndarray], tensor_dict2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add ``tensor_dict2``'s arrays to ``tensor_dict1`` (in place); shared keys must hold equal arrays."""
    for key, value in tensor_dict2.items():
        _require(key not in tensor_dict1 or _values_equal(tensor_dict1[key], value),
                 f"union conflict: non-tensor column {key!r} differs between the two DataProtos "
                 f"(`{key}` in tensor_dict1 and tensor_dict2 are not the same object.)")
        tensor_dict1[key] = value
    return tensor_dict1


def list_of_dict_to_dict_of_list(list_of_dict: list[dict]) -> dict[str, list]:
    """``[{a: 1, b: 2}, {a: 3, b: 4}]`` -> ``{a: [1, 3], b: [2, 4]}``; every dict must have the first one's keys."""
    if not list_of_dict:
        return {}
    out: dict[str, list] = {key: [] for key in list_of_dict[0]}
    for i, d in enumerate(list_of_dict):
        extra = set(d) - set(out)
        _require(not extra, f"dict {i} has key(s) {sorted(extra)} that dict 0 lacks")
        for key, value in d.items():
            out[key].append(value)
    return out
