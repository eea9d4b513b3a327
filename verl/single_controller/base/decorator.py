"""``@register``: how a worker method's inputs are split across ranks and its outputs gathered.

A worker method declares a *dispatch mode* (how the driver's arguments become per-rank arguments, and how
the per-rank results become one result) and an *execute mode* (which ranks run it). The worker group reads
these declarations when it binds the method, so the driver just calls ``worker_group.method(batch)``.

Every dispatch function returns ``(args, kwargs)`` in which each value is a list with one entry per rank;
every collect function turns the list of per-rank outputs into what the driver sees.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verl.protocol import DataProto, pad_dataproto_to_divisor

__all__ = [
    "MAGIC_ATTR",
    "PADDING_KEY",
    "Dispatch",
    "Execute",
    "DataProtoFuture",
    "register",
    "register_dispatch_mode",
    "get_dispatch_fns",
    "drop_padding",
    "make_nd_compute_dataproto_dispatch_fn",
]

MAGIC_ATTR = "__verl_register_attrs__"

PADDING_KEY = "_verl_dispatch_padding"
"""Key a dispatch function may add to its ``kwargs``: ``(pad_size, padded_length)`` of the DataProtos it padded to
split them evenly. The worker group removes it before the call and drops the padding rows from the result."""


class Dispatch(enum.Enum):
    """Built-in dispatch modes (custom ones are registered by name with :func:`register_dispatch_mode`)."""

    RANK_ZERO = "RANK_ZERO"
    """Arguments go to rank 0 only; its result is returned."""
    ONE_TO_ALL = "ONE_TO_ALL"
    """Every rank gets the same arguments; the driver gets the list of per-rank results."""
    ALL_TO_ALL = "ALL_TO_ALL"
    """Arguments that are lists of ``world_size`` entries go one entry per rank, others to every rank."""
    DP_COMPUTE = "DP_COMPUTE"
    """Every argument is a list of ``world_size`` entries, entry ``i`` to rank ``i``; results as a list."""
    DP_COMPUTE_PROTO = "DP_COMPUTE_PROTO"
    """DataProto arguments are chunked across ranks (padded if uneven); results concatenated, padding dropped."""
    DP_COMPUTE_PROTO_WITH_FUNC = "DP_COMPUTE_PROTO_WITH_FUNC"
    """Like DP_COMPUTE_PROTO, but the first argument is a function that every rank receives whole."""
    DP_COMPUTE_METRIC = "DP_COMPUTE_METRIC"
    """DataProto arguments are chunked across ranks; the per-rank results (metrics) come back as a list."""


class Execute(enum.Enum):
    ALL = "ALL"
    RANK_ZERO = "RANK_ZERO"


class DataProtoFuture:
    """The pending result of a ``blocking=False`` call; ``get()`` waits for it.

    Passing it straight into another worker-group call works: the dispatch waits for it first.
    """

    def __init__(self, get_fn: Callable[[], Any]):
        self._get_fn = get_fn
        self._done = False
        self._value: Any = None

    def get(self) -> Any:
        if not self._done:
            self._value, self._done = self._get_fn(), True
        return self._value


def _materialize(value: Any) -> Any:
    return value.get() if isinstance(value, DataProtoFuture) else value


# ----------------------------------------------------------------------------------------------------------------
# Dispatch and collect functions. ``wg`` is the worker group; it gives ``world_size``.


def _replicate(wg, *args, **kwargs):
    n = wg.world_size
    return tuple([_materialize(a)] * n for a in args), {k: [_materialize(v)] * n for k, v in kwargs.items()}


def _collect_list(wg, outputs: list) -> list:
    return outputs


def _collect_first(wg, outputs: list) -> Any:
    return outputs[0]


def _is_per_rank(value: Any, n: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == n


def _dispatch_all_to_all(wg, *args, **kwargs):
    n = wg.world_size
    values = [*args, *kwargs.values()]
    if values and all(_is_per_rank(v, n) for v in values):
        return tuple(list(a) for a in args), {k: list(v) for k, v in kwargs.items()}
    return _replicate(wg, *args, **kwargs)


def _dispatch_dp_compute(wg, *args, **kwargs):
    n = wg.world_size
    for name, v in [*((f"argument {i}", a) for i, a in enumerate(args)), *kwargs.items()]:
        if not _is_per_rank(v, n):
            raise ValueError(f"Dispatch.DP_COMPUTE needs every argument as a list of {n} per-rank values; {name} is not")
    return tuple(list(a) for a in args), {k: list(v) for k, v in kwargs.items()}


def _chunk_all(args: tuple, kwargs: dict, chunks: int) -> tuple[list[list], dict[str, list], tuple[int, int] | None]:
    """Every DataProto argument padded to a multiple of ``chunks`` rows (repeating its first rows, as
    :func:`~verl.protocol.pad_dataproto_to_divisor` does) and chunked; other arguments repeated. Returns the
    per-chunk args and kwargs and ``(pad_size, padded_length)`` when padding was added (else ``None``)."""
    padding = None

    def split(name: str, value: Any) -> list:
        nonlocal padding
        value = _materialize(value)
        if not isinstance(value, DataProto):
            return [value] * chunks
        padded, pad = pad_dataproto_to_divisor(value, chunks)
        if pad:
            if padding is not None and padding != (pad, len(padded)):
                raise ValueError(f"DataProto argument {name} has {len(value)} rows but another DataProto argument has "
                                 f"{padding[1] - padding[0]}; arguments padded for {chunks} ranks must have equal lengths")
            padding = (pad, len(padded))
        return padded.chunk(chunks)

    chunked_args = [split(f"#{i}", a) for i, a in enumerate(args)]
    chunked_kwargs = {k: split(repr(k), v) for k, v in kwargs.items()}
    return chunked_args, chunked_kwargs, padding


def _dispatch_dp_proto(wg, *args, **kwargs):
    chunked_args, chunked_kwargs, padding = _chunk_all(args, kwargs, wg.world_size)
    if padding:
        chunked_kwargs[PADDING_KEY] = padding
    return tuple(chunked_args), chunked_kwargs


def _dispatch_dp_proto_with_func(wg, func, *args, **kwargs):
    if not callable(func):
        raise TypeError("Dispatch.DP_COMPUTE_PROTO_WITH_FUNC expects a function as the first argument")
    args, kwargs = _dispatch_dp_proto(wg, *args, **kwargs)
    return ([func] * wg.world_size, *args), kwargs


def _collect_dp_proto(wg, outputs: list) -> Any:
    if all(isinstance(o, DataProto) for o in outputs):
        return DataProto.concat(outputs)
    if all(o is None for o in outputs):
        return None
    raise TypeError(
        "a DP_COMPUTE_PROTO method must return a DataProto on every rank, got "
        f"{sorted({type(o).__name__ for o in outputs})}"
    )


@dataclass(frozen=True)
class DispatchFns:
    dispatch_fn: Callable[..., tuple[tuple, dict]]
    collect_fn: Callable[[Any, list], Any]
    default_execute: Execute = Execute.ALL


_DISPATCH_MODES: dict[Any, DispatchFns] = {
    Dispatch.RANK_ZERO: DispatchFns(_replicate, _collect_first, Execute.RANK_ZERO),
    Dispatch.ONE_TO_ALL: DispatchFns(_replicate, _collect_list),
    Dispatch.ALL_TO_ALL: DispatchFns(_dispatch_all_to_all, _collect_list),
    Dispatch.DP_COMPUTE: DispatchFns(_dispatch_dp_compute, _collect_list),
    Dispatch.DP_COMPUTE_PROTO: DispatchFns(_dispatch_dp_proto, _collect_dp_proto),
    Dispatch.DP_COMPUTE_PROTO_WITH_FUNC: DispatchFns(_dispatch_dp_proto_with_func, _collect_dp_proto),
    Dispatch.DP_COMPUTE_METRIC: DispatchFns(_dispatch_dp_proto, _collect_list),
}


def register_dispatch_mode(name: str, dispatch_fn: Callable, collect_fn: Callable) -> None:
    """Add a custom dispatch mode usable as ``@register(dispatch_mode=name)``.

    ``dispatch_fn(worker_group, *args, **kwargs)`` returns ``(args, kwargs)`` whose values are lists with one
    entry per rank; ``collect_fn(worker_group, outputs)`` turns the per-rank outputs into the result.
    """
    if name in _DISPATCH_MODES or name in Dispatch.__members__:
        raise ValueError(f"dispatch mode {name!r} is already registered")
    _DISPATCH_MODES[name] = DispatchFns(dispatch_fn, collect_fn)


def get_dispatch_fns(mode: Any) -> DispatchFns:
    """Resolve a dispatch mode: a :class:`Dispatch` member, a registered name, or a dict with
    ``dispatch_fn`` and ``collect_fn``."""
    if isinstance(mode, dict):
        missing = {"dispatch_fn", "collect_fn"} - set(mode)
        if missing:
            raise ValueError(f"a custom dispatch mode dict needs keys {sorted(missing)}")
        return DispatchFns(mode["dispatch_fn"], mode["collect_fn"])
    if isinstance(mode, DispatchFns):
        return mode
    if isinstance(mode, str) and mode in Dispatch.__members__:
        mode = Dispatch[mode]
    try:
        return _DISPATCH_MODES[mode]
    except (KeyError, TypeError):
        known = [m.name for m in Dispatch] + [k for k in _DISPATCH_MODES if isinstance(k, str)]
        raise ValueError(f"unknown dispatch mode {mode!r}; known: {known}") from None


# ----------------------------------------------------------------------------------------------------------------
# Mesh dispatch: each worker registers its data-parallel rank in a named mesh and whether its output is
# collected. Workers sharing a dp rank (tensor/sequence-parallel peers) receive the same shard; only the
# collected one returns it.


def make_nd_compute_dataproto_dispatch_fn(mesh_name: str) -> DispatchFns:
    """Dispatch mode for workers that called ``self._register_dispatch_collect_info(mesh_name, dp_rank,
    is_collect)``: DataProtos are chunked by data-parallel size, results gathered from collected ranks."""

    def dispatch_fn(wg, *args, **kwargs):
        dp_ranks, _ = wg._query_dispatch_info(mesh_name)
        chunked_args, chunked_kwargs, padding = _chunk_all(args, kwargs, max(dp_ranks) + 1)
        per_rank_kwargs = {k: [c[r] for r in dp_ranks] for k, c in chunked_kwargs.items()}
        if padding:
            per_rank_kwargs[PADDING_KEY] = padding
        return tuple([c[r] for r in dp_ranks] for c in chunked_args), per_rank_kwargs

    def collect_fn(wg, outputs):
        dp_ranks, is_collect = wg._query_dispatch_info(mesh_name)
        picked = sorted((r, o) for r, c, o in zip(dp_ranks, is_collect, outputs, strict=True) if c)
        ranks = [r for r, _ in picked]
        if ranks != list(range(max(dp_ranks) + 1)):
            raise RuntimeError(f"mesh {mesh_name!r}: collected dp ranks {ranks}, expected exactly one per dp rank")
        return _collect_dp_proto(wg, [o for _, o in picked])

    return DispatchFns(dispatch_fn, collect_fn)


# ----------------------------------------------------------------------------------------------------------------


def drop_padding(output: Any, padding: tuple[int, int] | None) -> Any:
    """``output`` without the rows computed for the padding a dispatch added. A result ``k`` times as long as the
    padded input (``k`` samples per row, interleaved) loses ``k`` rows per padding row."""
    if not padding or not isinstance(output, DataProto):
        return output
    pad, padded_len = padding
    per_row = len(output) // padded_len if len(output) % padded_len == 0 else 1
    return output[: len(output) - pad * per_row]


def register(
    dispatch_mode: Any = Dispatch.ALL_TO_ALL,
    execute_mode: Execute | None = None,
    blocking: bool = True,
) -> Callable:
    """Declare how the worker group calls this worker method.

    Args:
        dispatch_mode: a :class:`Dispatch` member, a name given to :func:`register_dispatch_mode`, or a dict /
            :func:`make_nd_compute_dataproto_dispatch_fn` result with ``dispatch_fn`` and ``collect_fn``.
        execute_mode: which ranks run the method (default: rank 0 for ``Dispatch.RANK_ZERO``, else all).
        blocking: ``False`` makes the group call return a :class:`DataProtoFuture` at once.
    """
    fns = get_dispatch_fns(dispatch_mode)  # fail at class definition time for an unknown mode
    execute_mode = execute_mode or fns.default_execute

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def inner(*args, **kwargs):
            return func(*args, **kwargs)

        setattr(inner, MAGIC_ATTR, {"dispatch_mode": dispatch_mode, "execute_mode": execute_mode, "blocking": blocking})
        return inner

    return decorator
