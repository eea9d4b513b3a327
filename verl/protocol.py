"""DataProto: the one container that flows between the driver and the workers.

A ``DataProto`` holds three things that describe the same ``N`` samples:

- ``batch``: a :class:`tensordict.TensorDict` with ``batch_size == [N]`` (tensors sharing dim 0);
- ``non_tensor_batch``: ``{name: numpy object array of length N}`` (raw chat, uids, ground truth, ...);
- ``meta_info``: a plain dict about the whole batch (temperature, eos ids, metrics, timing).

The methods and their semantics are verl's (``chunk`` needs an even split unless auto-padding is on, ``concat``
gathers the parts' ``meta_info["metrics"]`` into lists, ...). Errors are :class:`DataProtoError`, which is both a
``ValueError`` and the ``AssertionError`` verl raises, so code catching either keeps working.

Pickling (what Ray does to every argument and result) sends each tensor as one flat byte buffer: with pickle
protocol 5 the buffers travel out of band, without copies through Python objects.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from verl.protocol_helpers import (
    DataProtoError,
    Index,
    _as_index,
    _require,
    _tensor_dict,
    _TensorDict,
    _values_equal,
    deserialize_single_tensor,
    deserialize_tensordict,
    list_of_dict_to_dict_of_list,
    serialize_single_tensor,
    serialize_tensordict,
    to_object_array,
    union_numpy_dict,
    union_tensor_dict,
)

if TYPE_CHECKING:
    from tensordict import TensorDict

__all__ = [
    "DataProto", "DataProtoConfig", "DataProtoError", "DataProtoItem", "collate_fn", "deserialize_single_tensor",
    "deserialize_tensordict", "fold_batch_dim", "list_of_dict_to_dict_of_list", "pad_dataproto_to_divisor",
    "serialize_single_tensor", "serialize_tensordict", "to_object_array", "union_numpy_dict", "union_tensor_dict",
    "unfold_batch_dim", "unpad_dataproto",
]  # fmt: skip


class _DataProtoConfigMeta(type):
    auto_padding_key = "_verl_auto_padding"
    _config: dict[str, bool] = {}

    @property
    def auto_padding(cls) -> bool:
        """On when ``VERL_AUTO_PADDING`` is true/1 or ``DataProtoConfig.auto_padding = True`` was set."""
        by_env = os.getenv("VERL_AUTO_PADDING", "FALSE").upper() in ("TRUE", "1")
        return by_env or cls._config.get(cls.auto_padding_key, False)

    @auto_padding.setter
    def auto_padding(cls, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"DataProtoConfig.auto_padding must be a bool, got {enabled!r}")
        cls._config[cls.auto_padding_key] = enabled


class DataProtoConfig(metaclass=_DataProtoConfigMeta):
    """Process-wide switch: ``DataProtoConfig.auto_padding = True`` lets :meth:`DataProto.chunk` split unevenly."""


@dataclass
class DataProtoItem:
    """One sample: ``batch`` a TensorDict without the batch dim, scalar non-tensor values, the shared meta_info."""

    batch: TensorDict | None = None
    non_tensor_batch: dict[str, Any] = field(default_factory=dict)
    meta_info: dict[str, Any] = field(default_factory=dict)


class DataProto:
    """Tensors + numpy object columns + meta info describing the same batch of samples.

    Args:
        batch: a ``TensorDict`` with one batch dimension, or ``{name: tensor}`` (all with the same dim 0), or
            ``None`` (an empty TensorDict as long as the non-tensor columns).
        non_tensor_batch: ``{name: 1-D numpy object array}`` of the same length (lists are converted).
        meta_info: free-form dict about the whole batch.
    """

    def __init__(
        self,
        batch: TensorDict | Mapping[str, torch.Tensor] | None = None,
        non_tensor_batch: Mapping[str, Any] | None = None,
        meta_info: dict[str, Any] | None = None,
    ):
        self.non_tensor_batch: dict[str, np.ndarray] = {
            k: v if isinstance(v, np.ndarray) and v.dtype == object else to_object_array(v)
            for k, v in (non_tensor_batch or {}).items()
        }
        if not isinstance(batch, _TensorDict()):
            n = next((len(v) for v in self.non_tensor_batch.values()), None) if not batch else None
            batch = _tensor_dict(batch or {}, n)
        self.batch: TensorDict = batch
        self.meta_info: dict[str, Any] = dict(meta_info or {})
        self.check_consistency()

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_dict(cls, tensors: Mapping[str, torch.Tensor] | None = None, non_tensors: Mapping[str, Any] | None = None,
                  meta_info: dict[str, Any] | None = None, num_batch_dims: int = 1, auto_padding: bool = False):
        """Build from ``{name: tensor}`` (their first ``num_batch_dims`` dims are the batch) and non-tensor columns
        (lists or arrays); ``auto_padding`` lets this batch be chunked unevenly (see :meth:`chunk`)."""
        _require(num_batch_dims > 0, f"num_batch_dims must be positive, got {num_batch_dims}")
        _require(not non_tensors or num_batch_dims == 1, "non-tensor columns need num_batch_dims=1")
        meta_info = dict(meta_info or {})
        if auto_padding:
            meta_info[DataProtoConfig.auto_padding_key] = True
        if num_batch_dims == 1 or not tensors:
            return cls(batch=dict(tensors or {}) or None, non_tensor_batch=non_tensors, meta_info=meta_info)
        return cls(batch=_tensor_dict(tensors, None, num_batch_dims), meta_info=meta_info)  # check_consistency refuses

    @classmethod
    def from_single_dict(cls, data: Mapping[str, Any], meta_info: dict[str, Any] | None = None,
                         auto_padding: bool = False):
        """Build from one dict: tensors into ``batch``, everything else (arrays, lists) into ``non_tensor_batch``."""
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        others = {k: v for k, v in data.items() if not isinstance(v, torch.Tensor)}
        return cls.from_dict(tensors, others, meta_info, auto_padding=auto_padding)

    @classmethod
    def from_tensordict(cls, tensor_dict: TensorDict, meta_info: dict[str, Any] | None = None, num_batch_dims: int = 1):
        """The inverse of :meth:`to_tensordict`: tensors to ``batch``, stacked non-tensor entries to
        ``non_tensor_batch``, single non-tensor entries to ``meta_info``."""
        from tensordict import NonTensorData, NonTensorStack

        meta_info = dict(meta_info or {})
        tensors, non_tensors = {}, {}
        for key, value in tensor_dict.items():
            if isinstance(value, NonTensorStack):
                non_tensors[key] = to_object_array(value.tolist())
            elif isinstance(value, NonTensorData):
                meta_info[key] = value.data
            elif isinstance(value, torch.Tensor):
                tensors[key] = value
        return cls.from_dict(tensors, non_tensors or None, meta_info, num_batch_dims=num_batch_dims)

    def to_tensordict(self) -> TensorDict:
        """One TensorDict: the tensors, each non-tensor column as a ``NonTensorStack``, each meta_info entry as
        ``NonTensorData`` (verl's layout)."""
        from tensordict import NonTensorData, NonTensorStack

        clash = set(self.batch.keys()) & (set(self.non_tensor_batch) | set(self.meta_info))
        _require(not clash, f"to_tensordict: key(s) {sorted(clash)} are in batch and in non_tensor_batch/meta_info")
        out = _TensorDict()(self.batch.to_dict(), batch_size=self.batch.batch_size)
        for key, values in self.non_tensor_batch.items():
            out[key] = NonTensorStack.from_list([NonTensorData(v) for v in values])
        for key, value in self.meta_info.items():
            out[key] = NonTensorData(value)
        return out

    def check_consistency(self) -> None:
        """Raise if ``batch`` has more than one batch dimension with non-tensor columns, or a non-tensor column is
        not a 1-D array of the batch's length."""
        if not isinstance(self.batch, _TensorDict()):
            raise TypeError(f"DataProto.batch must be a tensordict.TensorDict, got {type(self.batch).__name__}")
        _require(self.batch.batch_dims == 1, f"DataProto.batch has batch_size {list(self.batch.batch_size)}; only "
                 "one batch dimension is supported (TensorDict(..., batch_size=[N]))")
        n = self.batch.batch_size[0]
        for key, arr in self.non_tensor_batch.items():
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"non_tensor_batch[{key!r}] must be a numpy array, got {type(arr).__name__}")
            _require(len(arr) == n, f"non_tensor_batch[{key!r}] has {len(arr)} rows but the batch has {n}; every "
                     "column of a DataProto must describe the same samples")

    # ---------------------------------------------------------------- size and access

    def __len__(self) -> int:
        return self.batch.batch_size[0]

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
            return DataProtoItem(batch=self.batch[i], non_tensor_batch={k: v[i] for k, v in self.non_tensor_batch.items()},
                                 meta_info=self.meta_info)
        if not isinstance(idx, (slice, list, tuple, np.ndarray, torch.Tensor, range)):
            raise TypeError(f"indexing a DataProto with {type(idx).__name__} is not supported")
        index = _as_index(idx, n)
        if isinstance(index, slice):
            batch = self.batch[index]
        else:
            t_index = torch.from_numpy(index)
            batch = _TensorDict()({k: v[t_index.to(v.device)] for k, v in self.batch.items()}, batch_size=(len(index),),
                               device=self.batch.device)
        non_tensor = {k: v[index] for k, v in self.non_tensor_batch.items()}
        return type(self)(batch=batch, non_tensor_batch=non_tensor, meta_info=self.meta_info)

    def select_idxs(self, idxs: Sequence[int] | np.ndarray | torch.Tensor) -> DataProto:
        """The rows at ``idxs`` (integer indices or a boolean mask)."""
        return self[idxs]

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

    def select(self, batch_keys: Sequence[str] | None = None, non_tensor_batch_keys: Sequence[str] | None = None,
               meta_info_keys: Sequence[str] | None = None, deepcopy: bool = False) -> DataProto:
        """A DataProto with only the named keys (``None`` keeps all keys of that part). Shares tensors; with
        ``deepcopy`` the non-tensor columns and meta_info are copied (tensors too)."""
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        batch = self.batch.select(*batch_keys) if batch_keys is not None else self.batch.copy()
        non_tensor = {k: v for k, v in self.non_tensor_batch.items()
                      if non_tensor_batch_keys is None or k in non_tensor_batch_keys}
        meta = {k: v for k, v in self.meta_info.items() if meta_info_keys is None or k in meta_info_keys}
        if deepcopy:
            batch, non_tensor, meta = batch.clone(), copy.deepcopy(non_tensor), copy.deepcopy(meta)
        return type(self)(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)

    def pop(self, batch_keys: Sequence[str] | None = None, non_tensor_batch_keys: Sequence[str] | None = None,
            meta_info_keys: Sequence[str] | None = None) -> DataProto:
        """Remove the named keys from this DataProto and return them as a new one."""
        self._check_keys(batch_keys, non_tensor_batch_keys, meta_info_keys)
        tensors = {k: self.batch.pop(k) for k in batch_keys or ()}
        batch = _TensorDict()(tensors, batch_size=self.batch.batch_size, device=self.batch.device)
        non_tensor = {k: self.non_tensor_batch.pop(k) for k in non_tensor_batch_keys or ()}
        meta = {k: self.meta_info.pop(k) for k in meta_info_keys or ()}
        return type(self)(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)

    def rename(self, old_keys: str | Sequence[str], new_keys: str | Sequence[str]) -> DataProto:
        """Rename tensors of ``batch`` in place; returns ``self``."""
        old_keys = [old_keys] if isinstance(old_keys, str) else list(old_keys)
        new_keys = [new_keys] if isinstance(new_keys, str) else list(new_keys)
        _require(len(old_keys) == len(new_keys), f"rename got {len(old_keys)} old keys but {len(new_keys)} new keys")
        self._check_keys(old_keys, None, None)
        clash = [k for k in new_keys if k in self.batch.keys() and k not in old_keys]
        if clash:
            raise KeyError(f"cannot rename onto existing tensor(s) {clash}")
        self.batch.rename_key_(tuple(old_keys), tuple(new_keys))
        return self

    # ---------------------------------------------------------------- combining

    def union(self, other: DataProto) -> DataProto:
        """Merge ``other``'s keys into this DataProto (in place; returns ``self``). A key present in both must
        hold equal values, else :class:`DataProtoError` names it."""
        if len(self.batch.keys()) and len(other.batch.keys()):
            self.batch = union_tensor_dict(self.batch, other.batch)
        elif len(other.batch.keys()):
            _require(len(self) in (0, len(other)), f"cannot union DataProtos of lengths {len(self)} and {len(other)}")
            self.batch = other.batch.copy()
        self.non_tensor_batch = union_numpy_dict(self.non_tensor_batch, other.non_tensor_batch)
        for k, v in other.meta_info.items():
            if k in self.meta_info and not _values_equal(self.meta_info[k], v):
                raise DataProtoError(f"union conflict: meta_info[{k!r}] differs ({self.meta_info[k]!r} vs {v!r})")
            self.meta_info[k] = v
        self.check_consistency()
        return self

    @staticmethod
    def concat(data: Sequence[DataProto]) -> DataProto:
        """Concatenate along dim 0. ``meta_info`` is merged as verl merges worker outputs: every part's
        ``"metrics"`` (a dict, or a list of dicts) are gathered into one ``{name: [value per part...]}``; any other
        key must have the same value in every part that has it."""
        _require(len(data) > 0, "DataProto.concat needs at least one DataProto")
        keys, nt_keys = set(data[0].batch.keys()), set(data[0].non_tensor_batch)
        for i, p in enumerate(data[1:], start=1):
            _require(set(p.batch.keys()) == keys and set(p.non_tensor_batch) == nt_keys,
                     f"DataProto.concat: part {i} has keys {sorted(p.batch.keys())} / {sorted(p.non_tensor_batch)}, "
                     f"part 0 has {sorted(keys)} / {sorted(nt_keys)}")
        if keys:
            batch = torch.cat([p.batch for p in data], dim=0)
        else:
            batch = _TensorDict()({}, batch_size=(sum(len(p) for p in data),))
        non_tensor = {k: np.concatenate([p.non_tensor_batch[k] for p in data]) for k in data[0].non_tensor_batch}
        meta, metrics = {}, []
        for i, p in enumerate(data):
            for k, v in p.meta_info.items():
                if k == "metrics":
                    if v is not None:
                        metrics.extend(v) if isinstance(v, list) else metrics.append(v)
                elif k in meta:
                    if not _values_equal(meta[k], v):
                        raise DataProtoError(f"DataProto.concat: Conflicting values for meta_info key '{k}' "
                                             f"({meta[k]!r} in an earlier part, {v!r} in part {i})")
                else:
                    meta[k] = v
        if metrics:
            meta["metrics"] = list_of_dict_to_dict_of_list(metrics)
        return type(data[0])(batch=batch, non_tensor_batch=non_tensor, meta_info=meta)

    # ---------------------------------------------------------------- splitting and padding

    def is_padding_enabled(self) -> bool:
        """Whether this batch may be chunked unevenly: ``from_dict(auto_padding=True)`` or
        ``DataProtoConfig.auto_padding``."""
        return bool(self.meta_info.get(DataProtoConfig.auto_padding_key, False)) or DataProtoConfig.auto_padding

    def padding(self, padding_size: int, padding_candidate: str = "") -> None:
        """Append ``padding_size`` copies of the first row (``padding_candidate="first"``) or the last row (in place)."""
        if padding_size == 0:
            return
        row = self[[0 if padding_candidate == "first" else len(self) - 1]]
        padded = DataProto.concat([self, row.repeat(padding_size)])
        self.batch, self.non_tensor_batch = padded.batch, padded.non_tensor_batch

    def chunk(self, chunks: int) -> list[DataProto]:
        """Split into ``chunks`` consecutive parts of equal length; each part shares ``meta_info``.

        The length must divide evenly (else :class:`DataProtoError`); with auto-padding enabled the first parts
        get one row more instead. To pad, use :func:`pad_dataproto_to_divisor` (the worker-group dispatch does).
        """
        _require(chunks > 0, f"chunks must be positive, got {chunks}")
        n = len(self)
        _require(n % chunks == 0 or self.is_padding_enabled(),
                 f"DataProto.chunk: {n} rows do not split into {chunks} equal chunks; pad first with "
                 "verl.protocol.pad_dataproto_to_divisor(data, chunks) or enable auto-padding")
        sizes = [n // chunks + (i < n % chunks) for i in range(chunks)]
        bounds = np.cumsum([0, *sizes])
        return [self[int(bounds[i]): int(bounds[i + 1])] for i in range(chunks)]

    def split(self, split_size: int) -> list[DataProto]:
        """Consecutive parts of ``split_size`` rows (the last may be shorter)."""
        _require(split_size > 0, f"split_size must be positive, got {split_size}")
        return [self[i: i + split_size] for i in range(0, len(self), split_size)]

    def repeat(self, repeat_times: int = 2, interleave: bool = True) -> DataProto:
        """Repeat every row ``repeat_times`` times: ``aabb`` when ``interleave`` else ``abab``."""
        base = np.arange(len(self))
        return self[np.repeat(base, repeat_times) if interleave else np.tile(base, repeat_times)]

    def sample_level_repeat(self, repeat_times: Sequence[int] | np.ndarray | torch.Tensor) -> DataProto:
        """Repeat row ``i`` ``repeat_times[i]`` times (in order)."""
        counts = np.asarray(repeat_times.tolist() if isinstance(repeat_times, torch.Tensor) else list(repeat_times))
        _require(counts.ndim == 1 and len(counts) == len(self),
                 f"sample_level_repeat needs one count per row ({len(self)}), got shape {counts.shape}")
        return self[np.repeat(np.arange(len(self)), counts.astype(np.int64))]

    def unfold_column_chunks(self, n_split: int, split_keys: Sequence[str] | None = None) -> DataProto:
        """Cut dim 1 of each ``split_keys`` column into ``n_split`` pieces that become rows; other keys repeat."""
        split_keys = set(split_keys or ())
        rows = len(self) * n_split

        def unfold(key, value, repeat):
            if key not in split_keys:
                return repeat(value)
            if value.ndim >= 2:
                return value.reshape(rows, value.shape[1] // n_split, *value.shape[2:])
            pieces = []  # a 1-D object column of sequences: each sequence cut into n_split lists
            for seq in value:
                size = len(seq) // n_split
                pieces += [list(seq[i * size: (i + 1) * size]) for i in range(n_split)]
            return to_object_array(pieces)

        tensors = {k: unfold(k, v, lambda t: t.repeat_interleave(n_split, dim=0)) for k, v in self.batch.items()}
        non_tensor = {k: unfold(k, v, lambda a: np.repeat(a, n_split, axis=0)) for k, v in self.non_tensor_batch.items()}
        batch = _TensorDict()(tensors, batch_size=(rows,), device=self.batch.device)
        return type(self)(batch=batch, non_tensor_batch=non_tensor, meta_info=self.meta_info)

    def reorder(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> None:
        """Permute rows in place: row ``i`` becomes old row ``indices[i]``."""
        index = _as_index(indices, len(self))
        if isinstance(index, np.ndarray) and len(index) != len(self):
            raise DataProtoError(f"reorder needs {len(self)} indices, got {len(index)}")
        reordered = self[index]
        self.batch, self.non_tensor_batch = reordered.batch, reordered.non_tensor_batch

    def make_iterator(self, mini_batch_size: int, epochs: int, seed: int | None = None,
                      dataloader_kwargs: dict[str, Any] | None = None) -> Iterator[DataProto]:
        """Mini-batches of ``mini_batch_size`` rows over ``epochs`` passes, through a ``torch.utils.data.DataLoader``
        given ``dataloader_kwargs`` (e.g. ``shuffle=True``; ``seed`` makes its order reproducible)."""
        from torch.utils.data import DataLoader

        _require(mini_batch_size > 0 and len(self) % mini_batch_size == 0,
                 f"make_iterator: {len(self)} rows do not split into mini-batches of {mini_batch_size}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        loader = DataLoader(range(len(self)), batch_size=mini_batch_size, generator=generator,
                            collate_fn=lambda rows: self[list(rows)], **(dataloader_kwargs or {}))

        def batches():
            for _ in range(epochs):
                for mini in loader:
                    mini.meta_info = self.meta_info
                    yield mini

        return iter(batches())

    # ---------------------------------------------------------------- devices and storage

    def to(self, device: torch.device | str) -> DataProto:
        """Move every tensor to ``device`` (in place; returns ``self``)."""
        self.batch = self.batch.to(device)
        return self

    def print_size(self, prefix: str = "") -> None:
        tensors = sum(t.element_size() * t.numel() for t in self.batch.values()) / 1024**3
        arrays = sum(a.nbytes for a in self.non_tensor_batch.values()) / 1024**3
        print(f"{prefix + ', ' if prefix else ''}Size of tensordict: {tensors} GB, size of non_tensor_batch: {arrays} GB")

    def get_data_info(self) -> str:
        """A readable listing of the tensors, columns and meta_info types."""
        lines = ["batch", *(f"  {k}: {tuple(t.shape)} ({t.dtype}) {t.device}" for k, t in self.batch.items())]
        lines += ["non_tensor_batch", *(f"  {k}: ndarray{a.shape} ({a.dtype})" for k, a in self.non_tensor_batch.items())]
        lines += ["meta_info", *(f"  {k}: {type(v).__name__}" for k, v in self.meta_info.items())]
        return "\n".join(lines)

    def save_to_disk(self, path: str | os.PathLike) -> None:
        torch.save(self.__getstate__(), path)

    @staticmethod
    def load_from_disk(path: str | os.PathLike) -> DataProto:
        state = torch.load(path, weights_only=False)
        out = DataProto.__new__(DataProto)
        out.__setstate__(state)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"batch": serialize_tensordict(self.batch), "non_tensor_batch": self.non_tensor_batch,
                "meta_info": self.meta_info}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.batch = deserialize_tensordict(state["batch"])
        self.non_tensor_batch = state["non_tensor_batch"]
        self.meta_info = state["meta_info"]


# ---------------------------------------------------------------------------------------------------------------
# verl's module-level helpers.


def collate_fn(items: list[DataProtoItem]) -> DataProto:
    """Stack :class:`DataProtoItem` s back into a DataProto (a DataLoader's ``collate_fn``)."""
    batch = torch.stack([it.batch for it in items]).contiguous()
    columns = list_of_dict_to_dict_of_list([it.non_tensor_batch for it in items])
    return DataProto(batch=batch, non_tensor_batch={k: to_object_array(v) for k, v in columns.items()})


def fold_batch_dim(data: DataProto, new_batch_size: int) -> DataProto:
    """``[B, ...]`` -> ``[new_batch_size, B // new_batch_size, ...]``, grouping consecutive rows (non-tensor columns
    become 2-D object arrays)."""
    n = len(data)
    _require(n % new_batch_size == 0, f"fold_batch_dim: {n} rows do not fold into {new_batch_size} groups")
    tensors = {k: v.reshape(new_batch_size, n // new_batch_size, *v.shape[1:]) for k, v in data.batch.items()}
    out = type(data).__new__(type(data))
    out.batch = _TensorDict()(tensors, batch_size=(new_batch_size,), device=data.batch.device)
    out.non_tensor_batch = {k: v.reshape(new_batch_size, -1, *v.shape[1:]) for k, v in data.non_tensor_batch.items()}
    out.meta_info = data.meta_info
    return out


def unfold_batch_dim(data: DataProto, batch_dims: int = 2) -> DataProto:
    """The inverse of :func:`fold_batch_dim`: the first ``batch_dims`` dims become one batch dim again."""
    n = int(np.prod(next(iter(data.batch.values())).shape[:batch_dims])) if len(data.batch.keys()) else 0
    tensors = {k: v.reshape(-1, *v.shape[batch_dims:]) for k, v in data.batch.items()}
    non_tensor = {k: v.reshape(-1, *v.shape[batch_dims:]) for k, v in data.non_tensor_batch.items()}
    n = n or next((len(v) for v in non_tensor.values()), 0)
    batch = _TensorDict()(tensors, batch_size=(n,), device=data.batch.device)
    return type(data)(batch=batch, non_tensor_batch=non_tensor, meta_info=data.meta_info)


def pad_dataproto_to_divisor(data: DataProto, size_divisor: int) -> tuple[DataProto, int]:
    """``(padded, pad_size)``: ``data`` followed by copies of its first rows (cycling) so that its length is a
    multiple of ``size_divisor`` (undo with :func:`unpad_dataproto`)."""
    _require(size_divisor >= 1, f"size_divisor must be >= 1, got {size_divisor}")
    pad_size = (-len(data)) % size_divisor
    if pad_size == 0:
        return data, 0
    _require(len(data) > 0, "cannot pad an empty DataProto")
    return DataProto.concat([data, data[np.arange(pad_size) % len(data)]]), pad_size


def unpad_dataproto(data: DataProto, pad_size: int) -> DataProto:
    """``data`` without its last ``pad_size`` rows (the padding :func:`pad_dataproto_to_divisor` added)."""
    return data[: len(data) - pad_size] if pad_size else data
