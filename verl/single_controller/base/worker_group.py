"""``WorkerGroup`` and ``ResourcePool``: the driver-side view of a group of SPMD workers.

A worker group binds every ``@register``-ed method of its worker class as a method of its own that
dispatches the arguments, runs the method on the chosen ranks and collects the results. How workers run
(Ray actors, ...) is left to subclasses, which implement :meth:`WorkerGroup._execute`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from verl.single_controller.base.decorator import (
    MAGIC_ATTR,
    PADDING_KEY,
    DataProtoFuture,
    Execute,
    drop_padding,
    get_dispatch_fns,
)

__all__ = ["ClassWithInitArgs", "ResourcePool", "WorkerGroup"]


class ResourcePool:
    """How many worker processes run on each node.

    Args:
        process_on_nodes: number of processes per node, e.g. ``[8, 8]`` for two nodes of eight GPUs.
        max_colocate_count: how many worker groups may share one slot (the hybrid engine colocates roles).
        use_gpu: whether each process gets a GPU.
    """

    def __init__(self, process_on_nodes: Sequence[int] | None = None, max_colocate_count: int = 1, use_gpu: bool = True):
        process_on_nodes = list(process_on_nodes or [])
        if any(n <= 0 for n in process_on_nodes):
            raise ValueError(f"process_on_nodes must hold positive counts, got {process_on_nodes}")
        self._store = process_on_nodes
        self.max_colocate_count = max_colocate_count
        self.use_gpu = use_gpu

    def add_node(self, process_count: int) -> None:
        self._store.append(process_count)

    @property
    def world_size(self) -> int:
        return sum(self._store)

    @property
    def store(self) -> list[int]:
        return list(self._store)

    def local_world_size_list(self) -> list[int]:
        return [n for n in self._store for _ in range(n)]

    def local_rank_list(self) -> list[int]:
        return [i for n in self._store for i in range(n)]


class ClassWithInitArgs:
    """A worker class plus its constructor arguments, instantiated later (in this process by ``__call__``; a
    Ray worker group starts it as actors instead).

    ``colocated_classes`` (role -> class) is set by :func:`create_colocated_worker_cls` on a class that holds
    several roles in one process.
    """

    def __init__(self, cls: type, *args: Any, **kwargs: Any):
        self.cls = getattr(cls, "__ray_actor_class__", cls)  # accept ray.remote(cls) too
        self.args = args
        self.kwargs = kwargs
        self.colocated_classes: dict[str, type] | None = None

    def __call__(self) -> Any:
        return self.cls(*self.args, **self.kwargs)


class WorkerGroup:
    """A group of workers whose registered methods the driver calls as its own.

    Subclasses set ``self._worker_names`` and implement :meth:`_execute` (start the method on the given ranks
    and return one handle per rank), :meth:`_wait` (turn handles into values, raising a clear error
    naming the worker and method when one fails) and :meth:`_make_view` (for :meth:`spawn`).

    ``call_timeout_s`` (``None``/0: off) is the watchdog on every call: one that has not returned that many
    seconds after it started raises :class:`~verl.single_controller.base.watchdog.WorkerCallTimeoutError`
    naming the stuck worker, rank and method, with the stacks of its threads.
    """

    call_timeout_s: float | None = None

    def __init__(self) -> None:
        self._worker_names: list[str] = []
        self._dispatch_info_cache: dict[str, tuple[list[int], list[bool]]] = {}

    @property
    def world_size(self) -> int:
        return len(self._worker_names)

    @property
    def worker_names(self) -> list[str]:
        return list(self._worker_names)

    # ------------------------------------------------------------------ to implement

    def _execute(self, method_name: str, ranks: list[int], args: tuple, kwargs: dict) -> list:
        raise NotImplementedError

    def _wait(self, method_name: str, ranks: list[int], handles: list, started: float | None = None) -> list:
        """The results of ``handles``; ``started`` (``time.monotonic()`` when the call was made) starts the
        watchdog's clock."""
        raise NotImplementedError

    def _make_view(self, role: str) -> WorkerGroup:
        """An empty group of this type, named for ``role``, that shares this group's workers."""
        raise NotImplementedError

    # ------------------------------------------------------------------ calling methods

    def execute_all(self, method_name: str, *args, **kwargs) -> list:
        """Run ``method_name`` on every rank with the same arguments; the list of results."""
        ranks = list(range(self.world_size))
        per_rank = tuple([a] * len(ranks) for a in args), {k: [v] * len(ranks) for k, v in kwargs.items()}
        started = time.monotonic()
        return self._wait(method_name, ranks, self._execute(method_name, ranks, *per_rank), started)

    execute_all_sync = execute_all

    def execute_rank_zero(self, method_name: str, *args, **kwargs) -> Any:
        per_rank = tuple([a] for a in args), {k: [v] for k, v in kwargs.items()}
        started = time.monotonic()
        return self._wait(method_name, [0], self._execute(method_name, [0], *per_rank), started)[0]

    def _query_dispatch_info(self, mesh_name: str) -> tuple[list[int], list[bool]]:
        """Per rank: its data-parallel rank in ``mesh_name`` and whether its output is collected (cached)."""
        if mesh_name not in self._dispatch_info_cache:
            info = self.execute_all(self._method_prefix + "_query_dispatch_info", mesh_name)
            self._dispatch_info_cache[mesh_name] = ([r for r, _ in info], [c for _, c in info])
        return self._dispatch_info_cache[mesh_name]

    _method_prefix = ""

    def _make_method(self, remote_name: str, attrs: dict) -> Callable:
        fns = get_dispatch_fns(attrs["dispatch_mode"])
        execute_mode, blocking = attrs["execute_mode"], attrs["blocking"]

        def method(*args, **kwargs):
            args, kwargs = fns.dispatch_fn(self, *args, **kwargs)
            padding = kwargs.pop(PADDING_KEY, None)
            ranks = [0] if execute_mode == Execute.RANK_ZERO else list(range(self.world_size))
            for name, values in [*enumerate(args), *kwargs.items()]:
                if len(values) < len(ranks):
                    raise ValueError(f"{remote_name}: dispatch produced {len(values)} values for argument {name}, need {len(ranks)}")
            started = time.monotonic()
            handles = self._execute(remote_name, ranks, args, kwargs)

            def collect():
                return drop_padding(fns.collect_fn(self, self._wait(remote_name, ranks, handles, started)), padding)

            return collect() if blocking else DataProtoFuture(collect)

        method.__name__ = remote_name
        return method

    def _bind_worker_methods(self, user_cls: type, prefix: str = "") -> list[str]:
        """Bind every ``@register``-ed method of ``user_cls`` onto this group; returns their names."""
        bound = []
        for name in dir(user_cls):
            attr = getattr(user_cls, name, None)
            attrs = getattr(attr, MAGIC_ATTR, None)
            if not callable(attr) or attrs is None:
                continue
            if name.startswith("_"):  # private helpers are called through execute_all, not bound
                continue
            if hasattr(type(self), name):
                raise AttributeError(f"worker method {user_cls.__name__}.{name} clashes with WorkerGroup.{name}")
            setattr(self, name, self._make_method(prefix + name, attrs))
            bound.append(name)
        return bound

    def spawn(self, prefix_set: Sequence[str]) -> dict[str, WorkerGroup]:
        """Views of a colocated group, one per role, whose methods are that role's methods."""
        colocated = getattr(getattr(self, "cls_with_init", None), "colocated_classes", None)
        if colocated is None:
            raise TypeError("spawn() needs a worker group built from create_colocated_worker_cls(...)")
        views = {}
        for role in prefix_set:
            view = self._make_view(role)
            view._worker_names = self._worker_names
            view.call_timeout_s = self.call_timeout_s
            view._method_prefix = f"{role}_"
            view._bind_worker_methods(colocated[role], prefix=f"{role}_")
            views[role] = view
        return views
