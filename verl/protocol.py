"""DataProto: the one container that flows between the driver and the workers.

A ``DataProto`` holds three things that describe the same ``N`` samples:

- ``batch``: a :class:`TensorBatch`, tensors that all share dim 0 (``N``);
- ``non_tensor_batch``: ``{name: numpy object array of length N}`` (raw chat, uids, ground truth, ...);
- ``meta_info``: a plain dict about the whole batch (temperature, eos ids, metrics, timing).

Imports only the standard library, numpy and torch, so ``import verl`` stays light.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["DataProto", "DataProtoItem", "TensorBatch", "pad_dataproto_to_divisor", "to_object_array", "unpad_dataproto"]

Index = int | slice | Sequence[int] | np.ndarray | torch.Tensor


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
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"index must be a 1-D integer or boolean array, got dtype {idx.dtype} shape {idx.shape}")
    return idx.astype(np.int64)


class TensorBatch(MutableMapping):
    """An ordered ``{name: tensor}`` mapping whose tensors all share dim 0.

    Setting a tensor whose first dimension differs from ``batch_size`` raises at once, naming the key.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor] | None = None, batch_size: int | None = None):
        self._data: dict[str, torch.Tensor] = {}
        self._n = batch_size
        for key, value in (tensors or {}).items():
            self[key] = value

    @property
    def batch_size(self) -> torch.Size:
        return torch.Size([self._n if self._n is not None else 0])

    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(f"no tensor named {key!r} in batch; available: {sorted(self._data)}") from None

    def __setitem__(self, key: str, value: torch.Tensor) -> None:
        if not isinstance(key, str):
            raise TypeError(f"tensor names must be str, got {type(key).__name__}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"batch[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() == 0:
            raise ValueError(f"batch[{key!r}] is a 0-d tensor; batch tensors need a leading batch dimension")
        if self._n is None:
            self._n = value.shape[0]
        elif value.shape[0] != self._n:
            raise ValueError(f"batch[{key!r}] has {value.shape[0]} rows but the batch has {self._n}")
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {tuple(v.shape)} {v.dtype}" for k, v in self._data.items())
        return f"TensorBatch(batch_size={self._n}, {{{fields}}})"

    def index(self, idx: np.ndarray | slice) -> TensorBatch:
        if isinstance(idx, slice):
            out = TensorBatch({k: v[idx] for k, v in self._data.items()})
            out._n = len(range(*idx.indices(self._n))) if self._data else None
            return out
        t_idx = torch.from_numpy(idx)
        out = TensorBatch({k: v[t_idx.to(v.device)] for k, v in self._data.items()})
        out._n = len(idx) if self._data else None
        return out

    def to(self, device: torch.device | str) -> TensorBatch:
        out = TensorBatch({k: v.to(device) for k, v in self._data.items()})
        out._n = self._n
        return out

    def contiguous(self) -> TensorBatch:
        out = TensorBatch({k: v.contiguous() for k, v in self._data.items()})
        out._n = self._n
        return out


@dataclass
class DataProtoItem:
    """One sample of a DataProto: ``batch`` tensors without the batch dim, scalar non-tensor values."""

    batch: dict[str, torch.Tensor] = field(default_factory=dict)
    non_tensor_batch: dict[str, Any] = field(default_factory=dict)
    meta_info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Pickling: tensors travel as flat byte buffers (numpy arrays), which pickle protocol 5 and Ray's object
# store send out-of-band without copying through Python objects.


def _tensor_to_buffer(t: torch.Tensor) -> tuple[np.ndarray, str, tuple[int, ...]]:
    t = t.detach().to("cpu").contiguous()
    flat = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
    return flat.numpy(), str(t.dtype).removeprefix("torch."), tuple(t.shape)


def _buffer_to_tensor(buf: np.ndarray, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not buf.flags.writeable:  # Ray hands out read-only views of its shared memory
        buf = buf.copy()
    return torch.from_numpy(buf).view(getattr(torch, dtype)).reshape(shape)


class DataProto:
    """Tensors + numpy object columns + meta info describing the same batch of samples.

    Args:
        batch: ``{name: tensor}`` (or a :class:`TensorBatch`), all with the same dim 0.
        non_tensor_batch: ``{name: 1-D numpy object array}`` of the same length.
        meta_info: free-form dict about the whole batch.
    """

    def __init__(
        self,
        batch: TensorBatch | Mapping[str, torch.Tensor] | None = None,
        non_tensor_batch: Mapping[str, Any] | None = None,
        meta_info: dict[str, Any] | None = None,
    ):
        self.batch: TensorBatch = batch if isinstance(batch, TensorBatch) else TensorBatch(batch)
        self.non_tensor_batch: dict[str, np.ndarray] = {
            k: v if isinstance(v, np.ndarray) and v.dtype == object else to_object_array(v)
            for k, v in (non_tensor_batch or {}).items()
        }
        self.meta_info: dict[str, Any] = dict(meta_info or {})
        self.check_consistency()

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_dict(
        cls,
        tensors: Mapping[str, torch.Tensor] | None = None,
        non_tensors: Mapping[str, Any] | None = None,
        meta_info: dict[str, Any] | None = None,
    ) -> DataProto:
        """Build from a dict of tensors and a dict of non-tensor columns (lists or arrays)."""
        return cls(batch=tensors, non_tensor_batch=non_tensors, meta_info=meta_info)

    @classmethod
    def from_single_dict(cls, data: Mapping[str, Any], meta_info: dict[str, Any] | None = None) -> DataProto:
        """Build from one dict, sorting tensors into ``batch`` and everything else into ``non_tensor_batch``."""
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        others = {k: v for k, v in data.items() if not isinstance(v, torch.Tensor)}
        return cls(batch=tensors, non_tensor_batch=others, meta_info=meta_info)

    def check_consistency(self) -> None:
        """Raise if a non-tensor column is not 1-D or its length differs from the tensors'."""
        n = self.batch.batch_size[0] if len(self.batch) else None
        for key, arr in self.non_tensor_batch.items():
            if arr.ndim != 1:
                raise ValueError(f"non_tensor_batch[{key!r}] must be 1-D, got shape {arr.shape}")
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(
                    f"non_tensor_batch[{key!r}] has {len(arr)} rows but the batch has {n}; "
                    "every column of a DataProto must describe the same samples"
                )

    # ---------------------------------------------------------------- size and access

    def __len__(self) -> int:
        if len(self.batch):
            return self.batch.batch_size[0]
        for arr in self.non_tensor_batch.values():
            return len(arr)
        return 0

    def __repr__(self) -> str:
        cols = {k: f"{v.dtype}" for k, v in self.non_tensor_batch.items()}
        return f"DataProto(len={len(self)}, batch={self.batch!r}, non_tensor_batch={cols}, meta_info={list(self.meta_info)})"

    def __getitem__(self, idx: Index) -> DataProto | DataProtoItem:
        """``data[i]`` gives a :class:`DataProtoItem`; a slice, index list/array/tensor or bool mask a DataProto."""
        n = len(self)
        if isinstance(idx, (int, np.integer)) or (isinstance(idx, torch.Tensor) and idx.dim() == 0):
            i = int(idx)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for DataProto of length {n}")
            return DataProtoItem(
                batch={k: v[i] for k, v in self.batch.items()},
                non_tensor_batch={k: v[i] for k, v in self.non_tensor_batch.items()},
                meta_info=self.meta_info,
            )
        index = _as_index(idx, n)
        if isinstance(index, np.ndarray) and len(index) and (index.max() >= n or index.min() < -n):
            raise IndexError(f"index {int(index.max())} out of range for DataProto of length {n}")
        return DataProto(
            batch=self.batch.index(index),
            non_tensor_batch={k: v[index] for k, v in self.non_tensor_batch.items()},
            meta_info=self.meta_info,
        )

    def __iter__(self) -> Iterator[DataProtoItem]:
        for i in range(len(self)):
            yield self[i]

    def slice(self, start: int | None = None, end: int | None = None, step: int | None = None) -> DataProto:
        return self[slice(start, end, step)]

    # ---------------------------------------------------------------- selecting and renaming keys

    def _check_keys(self, batch_keys, non_tensor_batch_keys, meta_info_keys) -> None:
        for keys, have, where in (
            (batch_keys, self.batch.keys(), "batch"),
            (non_tensor_batch_keys, self.non_tensor_batch.keys(), "non_tensor_batch"),
            (meta_info_keys, self.meta_info.keys(), "meta_info"),
        ):
            missing = [k for k in keys or () if k not in have]
            if missing:
                raise KeyError(f"{where} has no key(s) {missing}; available: {sorted(have)}")

    def select(
        self,
        batch_keys: Sequence[str] | None = None,
        non_tensor_batch_keys: Sequence[str] | None = None,
        meta_info_keys: Sequence[str] | None = None,
        deepcopy: bool = False,
    ) -> DataProto:
        """A DataProto with only the named keys (``None`` keeps all keys of that part). Shares tensors
        unless ``deepcopy``."""
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        batch = TensorBatch({k: self.batch[k] for k in (self.batch.keys() if batch_keys is None else batch_keys)})
        batch._n = self.batch._n
        non_tensor = {
            k: self.non_tensor_batch[k]
            for k in (self.non_tensor_batch if non_tensor_batch_keys is None else non_tensor_batch_keys)
        }
        meta = {k: self.meta_info[k] for k in (self.meta_info if meta_info_keys is None else meta_info_keys)}
        out = DataProto(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)
        return copy.deepcopy(out) if deepcopy else out

    def pop(
        self,
        batch_keys: Sequence[str] | None = None,
        non_tensor_batch_keys: Sequence[str] | None = None,
        meta_info_keys: Sequence[str] | None = None,
    ) -> DataProto:
        """Remove the named keys from this DataProto and return them as a new one."""
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        batch = TensorBatch({k: self.batch.pop(k) for k in batch_keys or ()})
        batch._n = self.batch._n
        non_tensor = {k: self.non_tensor_batch.pop(k) for k in non_tensor_batch_keys or ()}
        meta = {k: self.meta_info.pop(k) for k in meta_info_keys or ()}
        return DataProto(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)

    def rename(self, old_keys: str | Sequence[str], new_keys: str | Sequence[str]) -> DataProto:
        """Rename tensors of ``batch`` in place (keeping their order); returns ``self``."""
        old_keys = [old_keys] if isinstance(old_keys, str) else list(old_keys)
        new_keys = [new_keys] if isinstance(new_keys, str) else list(new_keys)
        if len(old_keys) != len(new_keys):
            raise ValueError(f"rename got {len(old_keys)} old keys but {len(new_keys)} new keys")
        self._check_keys(old_keys, None, None)
        mapping = dict(zip(old_keys, new_keys))
        clash = [k for k in new_keys if k in self.batch and k not in mapping]
        if clash:
            raise KeyError(f"cannot rename onto existing tensor(s) {clash}")
        items = [(mapping.get(k, k), v) for k, v in self.batch.items()]
        self.batch._data = dict(items)
        return self

    # ---------------------------------------------------------------- combining

    def union(self, other: DataProto) -> DataProto:
        """Merge ``other``'s keys into this DataProto (in place; returns ``self``).

        A key present in both must hold equal values, else ``ValueError`` names it.
        """
        if len(self) and len(other) and len(self) != len(other):
            raise ValueError(f"cannot union DataProtos of lengths {len(self)} and {len(other)}")
        for k, v in other.batch.items():
            if k in self.batch and not (self.batch[k].shape == v.shape and torch.equal(self.batch[k], v)):
                raise ValueError(f"union conflict: tensor {k!r} differs between the two DataProtos")
            self.batch[k] = v
        for k, v in other.non_tensor_batch.items():
            if k in self.non_tensor_batch and not _object_arrays_equal(self.non_tensor_batch[k], v):
                raise ValueError(f"union conflict: non-tensor column {k!r} differs between the two DataProtos")
            self.non_tensor_batch[k] = v
        for k, v in other.meta_info.items():
            if k in self.meta_info and not _values_equal(self.meta_info[k], v):
                raise ValueError(f"union conflict: meta_info[{k!r}] differs ({self.meta_info[k]!r} vs {v!r})")
            self.meta_info[k] = v
        self.check_consistency()
        return self

    @staticmethod
    def concat(data: Sequence[DataProto]) -> DataProto:
        """Concatenate along dim 0. Rows a :meth:`chunk` added as padding (``.padding``) are dropped.

        All parts must have the same keys; ``meta_info`` is taken from the first part.
        """
        if not data:
            raise ValueError("DataProto.concat needs at least one DataProto")
        parts = [d[: len(d) - d.padding] if d.padding else d for d in data]
        keys = list(parts[0].batch.keys())
        nt_keys = list(parts[0].non_tensor_batch.keys())
        for i, p in enumerate(parts[1:], start=1):
            if set(p.batch.keys()) != set(keys) or set(p.non_tensor_batch) != set(nt_keys):
                raise ValueError(
                    f"DataProto.concat: part {i} has keys {sorted(p.batch.keys())} / {sorted(p.non_tensor_batch)}, "
                    f"part 0 has {sorted(keys)} / {sorted(nt_keys)}"
                )
        batch = {k: torch.cat([p.batch[k] for p in parts]) for k in keys}
        non_tensor = {k: np.concatenate([p.non_tensor_batch[k] for p in parts]) for k in nt_keys}
        return DataProto(batch=batch, non_tensor_batch=non_tensor, meta_info=dict(parts[0].meta_info))

    # ---------------------------------------------------------------- splitting

    padding: int = 0
    """Trailing rows of this DataProto that are padding added by :meth:`chunk` (dropped by :meth:`concat`)."""

    def chunk(self, chunks: int) -> list[DataProto]:
        """Split into ``chunks`` parts of equal length.

        When the length does not divide evenly the batch is padded by repeating its first rows, so every part
        has the same size (what data-parallel ranks need); each part records its own padding in ``.padding``
        and :meth:`concat` drops it again (the dispatch layer copies ``.padding`` onto a worker's result).
        """
        if chunks <= 0:
            raise ValueError(f"chunks must be positive, got {chunks}")
        n = len(self)
        size = -(-n // chunks)  # ceil
        pad = size * chunks - n
        padded = self if pad == 0 else DataProto.concat([self, self[np.arange(pad) % max(n, 1)]])
        out = []
        for i in range(chunks):
            part = padded[i * size : (i + 1) * size]
            part.padding = max(0, min(size, (i + 1) * size - n))
            out.append(part)
        return out

    def split(self, split_size: int) -> list[DataProto]:
        """Consecutive parts of ``split_size`` rows (the last may be shorter)."""
        if split_size <= 0:
            raise ValueError(f"split_size must be positive, got {split_size}")
        return [self[i : i + split_size] for i in range(0, len(self), split_size)]

    def repeat(self, repeat_times: int = 2, interleave: bool = True) -> DataProto:
        """Repeat every row ``repeat_times`` times: ``aabb`` when ``interleave`` else ``abab``."""
        n = len(self)
        if interleave:
            index = np.repeat(np.arange(n), repeat_times)
        else:
            index = np.tile(np.arange(n), repeat_times)
        out = self[index]
        out.meta_info = dict(self.meta_info)
        return out

    def reorder(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> None:
        """Permute rows in place: row ``i`` becomes old row ``indices[i]``."""
        index = _as_index(indices, len(self))
        if isinstance(index, np.ndarray) and len(index) != len(self):
            raise ValueError(f"reorder needs {len(self)} indices, got {len(index)}")
        reordered = self[index]
        self.batch, self.non_tensor_batch = reordered.batch, reordered.non_tensor_batch

    # ---------------------------------------------------------------- devices and storage

    def to(self, device: torch.device | str) -> DataProto:
        """Move every tensor to ``device`` (in place; returns ``self``)."""
        self.batch = self.batch.to(device)
        return self

    def save_to_disk(self, path: str | os.PathLike) -> None:
        torch.save(self.__getstate__(), path)

    @staticmethod
    def load_from_disk(path: str | os.PathLike) -> DataProto:
        state = torch.load(path, weights_only=False)
        out = DataProto.__new__(DataProto)
        out.__setstate__(state)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {
            "tensors": {k: _tensor_to_buffer(v) for k, v in self.batch.items()},
            "batch_size": self.batch._n,
            "non_tensor_batch": self.non_tensor_batch,
            "meta_info": self.meta_info,
            "padding": self.padding,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.batch = TensorBatch({k: _buffer_to_tensor(*v) for k, v in state["tensors"].items()})
        self.batch._n = state["batch_size"]
        self.non_tensor_batch = state["non_tensor_batch"]
        self.meta_info = state["meta_info"]
        if state.get("padding"):
            self.padding = state["padding"]


def _object_arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    try:
        return bool(a == b)
    except Exception:
        return a is b


def pad_dataproto_to_divisor(data: DataProto, size_divisor: int) -> tuple[DataProto, int]:
    """``(padded, pad_size)``: ``data`` followed by copies of its first rows (cycling) so that its length is a
    multiple of ``size_divisor`` (verl's helper; undo with :func:`unpad_dataproto`)."""
    if size_divisor < 1:
        raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
    pad_size = (-len(data)) % size_divisor
    if pad_size == 0:
        return data, 0
    if len(data) == 0:
        raise ValueError("cannot pad an empty DataProto")
    rows = [i % len(data) for i in range(pad_size)]
    return DataProto.concat([data, data[rows]]), pad_size


def unpad_dataproto(data: DataProto, pad_size: int) -> DataProto:
    """``data`` without its last ``pad_size`` rows (the padding :func:`pad_dataproto_to_divisor` added)."""
    return data[: len(data) - pad_size] if pad_size else data
