"""Worker groups as Ray actors placed by Ray placement groups.

One placement group per node holds one bundle per worker process; a worker group puts its rank ``i`` on
bundle ``i``. Several worker groups can share a pool's bundles (``max_colocate_count``), or several roles can
share one process (:func:`create_colocated_worker_cls`), which is how the hybrid engine keeps actor and
rollout in one process.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from verl.single_controller.base.colocate import colocated_worker_class
from verl.single_controller.base.watchdog import (
    STACK_DUMP_DIR_ENV,
    WorkerCallTimeoutError,
    dump_process_stacks,
    stack_dump_dir,
    timeout_message,
)
from verl.single_controller.base.worker import WORLD_ENV, find_free_port, get_node_ip
from verl.single_controller.base.worker_group import ClassWithInitArgs, ResourcePool, WorkerGroup

__all__ = [
    "RayClassWithInitArgs",
    "RayResourcePool",
    "RayWorkerGroup",
    "WorkerCallTimeoutError",
    "WorkerGroupError",
    "create_colocated_worker_cls",
]

PLACEMENT_TIMEOUT_S = 120
STACK_DUMP_WAIT_S = 15.0


class WorkerGroupError(RuntimeError):
    """A worker raised or died while running a method; names the worker and the method."""


class RayResourcePool(ResourcePool):
    """A :class:`ResourcePool` backed by one Ray placement group per node (created on first use).

    Args:
        process_on_nodes: worker processes per node, e.g. ``[2]`` or ``[8, 8]``.
        use_gpu: give each process one GPU (shared by ``max_colocate_count`` colocated groups).
        name_prefix: prefix of the placement-group names.
        max_colocate_count: how many worker groups may be placed on the same bundles.
    """

    def __init__(
        self,
        process_on_nodes: Sequence[int] | None = None,
        use_gpu: bool = True,
        name_prefix: str = "",
        max_colocate_count: int = 1,
        detached: bool = False,
    ):
        super().__init__(process_on_nodes, max_colocate_count, use_gpu)
        self.name_prefix = name_prefix
        self.detached = detached
        self._pgs: list[PlacementGroup] | None = None

    def bundle(self) -> dict[str, float]:
        return {"CPU": 1, "GPU": 1} if self.use_gpu else {"CPU": 1}

    def get_placement_groups(self, strategy: str = "STRICT_PACK") -> list[PlacementGroup]:
        if self._pgs is None:
            lifetime = "detached" if self.detached else None
            tag = uuid.uuid4().hex[:8]  # placement-group names must be unique in the cluster
            pgs = [
                placement_group([self.bundle()] * n, strategy=strategy, name=f"{self.name_prefix}pg{i}_{tag}", lifetime=lifetime)
                for i, n in enumerate(self._store)
            ]
            ready, _ = ray.wait([pg.ready() for pg in pgs], num_returns=len(pgs), timeout=PLACEMENT_TIMEOUT_S)
            if len(ready) < len(pgs):
                for pg in pgs:
                    ray.util.remove_placement_group(pg)
                raise RuntimeError(
                    f"could not reserve {self._store} processes of {self.bundle()} within {PLACEMENT_TIMEOUT_S}s; "
                    f"the Ray cluster has {ray.cluster_resources()}. Lower trainer.n_gpus_per_node / trainer.nnodes "
                    "or start Ray with more resources."
                )
            self._pgs = pgs
        return self._pgs

    def remove(self) -> None:
        """Give the reserved resources back to the cluster (kill the pool's worker groups first)."""
        for pg in self._pgs or []:
            ray.util.remove_placement_group(pg)
        self._pgs = None


class RayClassWithInitArgs(ClassWithInitArgs):
    """A worker class plus the arguments of its constructor, instantiated later as Ray actors."""

    def __init__(self, cls: type, *args: Any, **kwargs: Any):
        super().__init__(cls, *args, **kwargs)
        self._options: dict[str, Any] = {}

    @classmethod
    def from_class_with_init_args(cls, spec: ClassWithInitArgs) -> RayClassWithInitArgs:
        """The Ray form of a plain :class:`ClassWithInitArgs` (its colocated roles kept)."""
        if isinstance(spec, RayClassWithInitArgs):
            return spec
        out = cls(spec.cls, *spec.args, **spec.kwargs)
        out.colocated_classes = spec.colocated_classes
        return out

    def update_options(self, options: dict[str, Any]) -> None:
        """Extra ``ray.remote`` options (e.g. ``runtime_env``) for every actor of this class."""
        self._options.update(options)

    def __call__(self, placement_group: PlacementGroup, bundle_index: int, num_cpus: float, num_gpus: float,
                 env_vars: dict[str, str], name: str | None = None, detached: bool = False):
        runtime_env = dict(self._options.get("runtime_env", {}))
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env_vars}
        options = {
            **self._options,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group, placement_group_bundle_index=bundle_index),
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "runtime_env": runtime_env,
        }
        if name is not None:
            options["name"] = name
        if detached:
            options["lifetime"] = "detached"
        return ray.remote(self.cls).options(**options).remote(*self.args, **self.kwargs)


@ray.remote(num_cpus=0)
def _master_address() -> tuple[str, int]:
    return get_node_ip(), find_free_port()


@ray.remote(num_cpus=0)
def _dump_stacks_on_node(pid: int, dump_dir: str) -> str:
    return dump_process_stacks(pid, dump_dir)


def _local_dump_file(actor: Any) -> str | None:
    """The stack-dump file of ``actor``'s process when it runs on this node, else ``None``."""
    try:
        from ray._private import state

        info = state.actors(actor._actor_id.hex())
        if info["Address"]["NodeID"] != ray.get_runtime_context().get_node_id():
            return None
        return os.path.join(stack_dump_dir(), f"{int(info['Pid'])}.txt")
    except Exception:
        return None


def actor_stacks(actor: Any, dump_dir: str) -> str:
    """Every thread's stack of the process running ``actor`` (signalled with faulthandler's dump signal; from a
    task on the actor's node when that is not this one), even while the actor is busy or stuck."""
    try:
        from ray._private import state

        info = state.actors(actor._actor_id.hex())
        pid, node = int(info["Pid"]), info["Address"]["NodeID"]
    except Exception as exc:  # an unexpected Ray version or a dead actor
        return f"(could not locate the actor's process: {exc!r})"
    try:
        if node == ray.get_runtime_context().get_node_id():
            return dump_process_stacks(pid, dump_dir)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = _dump_stacks_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        return ray.get(task.remote(pid, dump_dir), timeout=STACK_DUMP_WAIT_S)
    except Exception as exc:
        return f"(could not dump the stacks of process {pid} on node {node[:12]}: {exc!r})"


def _check_worker_env(worker_env: dict[str, str] | None) -> dict[str, str]:
    """``worker_env`` as ``{str: str}`` (numbers and bools are written as strings), else a clear error."""
    if worker_env is None:
        return {}
    if not isinstance(worker_env, dict):
        raise TypeError(f"worker_env must be a dict of environment variables, got {type(worker_env).__name__}")
    clash = sorted(set(worker_env) & {STACK_DUMP_DIR_ENV, *WORLD_ENV})
    if clash:
        raise ValueError(f"worker_env may not override {clash}: the worker group sets them for each rank")
    out = {}
    for key, value in worker_env.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ValueError(f"worker_env: {key!r} is not a valid environment variable name")
        if not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"worker_env[{key!r}] must be a string (or number), got {type(value).__name__}")
        out[key] = str(value)
    return out


class RayWorkerGroup(WorkerGroup):
    """``world_size`` Ray actors of one worker class, one per bundle of ``resource_pool``.

    Every ``@register``-ed method of the class becomes a method of this group, e.g. ``wg.update_actor(batch)``.
    With ``call_timeout_s`` (seconds; ``None``/0: off), a call whose ranks have not all returned by then raises
    :class:`WorkerCallTimeoutError` naming the stuck workers, ranks and method, with their threads' stacks.
    ``worker_env`` adds environment variables to every worker process (verl's option; the rank and master
    variables the group sets itself cannot be overridden).
    """

    def __init__(
        self,
        resource_pool: RayResourcePool | None = None,
        ray_cls_with_init: RayClassWithInitArgs | None = None,
        name_prefix: str | None = None,
        detached: bool = False,
        call_timeout_s: float | None = None,
        worker_env: dict[str, str] | None = None,
    ):
        super().__init__()
        self.call_timeout_s = call_timeout_s
        self.customized_worker_env = _check_worker_env(worker_env)
        self._workers: list[Any] = []
        if ray_cls_with_init is not None:
            ray_cls_with_init = RayClassWithInitArgs.from_class_with_init_args(ray_cls_with_init)
        self.name_prefix = name_prefix or ray_cls_with_init.cls.__name__
        self.ray_cls_with_init = self.cls_with_init = ray_cls_with_init
        if resource_pool is None:  # an empty group; `spawn` fills views of an existing one
            return
        self._create_workers(resource_pool, ray_cls_with_init, detached)
        self._bind_worker_methods(ray_cls_with_init.cls)

    @property
    def workers(self) -> list[Any]:
        return list(self._workers)

    def _create_workers(self, pool: RayResourcePool, cls: RayClassWithInitArgs, detached: bool) -> None:
        pgs = pool.get_placement_groups()
        master_addr, master_port = ray.get(
            _master_address.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pgs[0], 0)).remote()
        )
        world_size, rank = pool.world_size, 0
        share = 1.0 / pool.max_colocate_count
        for pg, local_world_size in zip(pgs, pool.store):
            for local_rank in range(local_world_size):
                env = {
                    STACK_DUMP_DIR_ENV: stack_dump_dir(),  # where the worker writes its stacks when asked
                    "RANK": str(rank),
                    "WORLD_SIZE": str(world_size),
                    "LOCAL_RANK": str(local_rank),
                    "LOCAL_WORLD_SIZE": str(local_world_size),
                    "MASTER_ADDR": master_addr,
                    "MASTER_PORT": str(master_port),
                }
                env.update(self.customized_worker_env)
                name = f"{self.name_prefix}_{rank}"
                self._workers.append(
                    cls(pg, local_rank, num_cpus=share, num_gpus=share if pool.use_gpu else 0, env_vars=env,
                        name=name if detached else None, detached=detached)
                )
                self._worker_names.append(name)
                rank += 1

    def _execute(self, method_name: str, ranks: list[int], args: tuple, kwargs: dict) -> list:
        return [
            getattr(self._workers[r], method_name).remote(*(a[i] for a in args), **{k: v[i] for k, v in kwargs.items()})
            for i, r in enumerate(ranks)
        ]

    def _wait(self, method_name: str, ranks: list[int], handles: list, started: float | None = None) -> list:
        """Results in rank order; the first failure raises at once instead of waiting on its peers, and ranks
        still running ``call_timeout_s`` after ``started`` raise :class:`WorkerCallTimeoutError`."""
        results: list[Any] = [None] * len(handles)
        pending = {ref: i for i, ref in enumerate(handles)}
        deadline = started + self.call_timeout_s if self.call_timeout_s and started is not None else None
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not ready:
                raise self._call_timeout(method_name, [ranks[i] for i in sorted(pending.values())], len(handles))
            i = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                name = self._worker_names[ranks[i]]
                cause = getattr(exc, "cause", None) or exc
                raise WorkerGroupError(
                    f"worker {name} (rank {ranks[i]}) failed in {method_name}: {type(cause).__name__}: {cause}"
                ) from exc
        return results

    def _call_timeout(self, method_name: str, stuck_ranks: list[int], total: int) -> WorkerCallTimeoutError:
        """The report of a call that ran past the watchdog's limit, with the stuck workers' stacks."""
        stuck = [(self._worker_names[r], r) for r in stuck_ranks]
        stacks = {f"{name} (rank {r})": actor_stacks(self._workers[r], stack_dump_dir()) for name, r in stuck[:8]}
        return WorkerCallTimeoutError(timeout_message(method_name, stuck, self.call_timeout_s, total - len(stuck),
                                                      total, stacks))

    def _make_view(self, role: str) -> RayWorkerGroup:
        view = RayWorkerGroup(name_prefix=f"{self.name_prefix}.{role}", ray_cls_with_init=self.ray_cls_with_init)
        view._workers = self._workers
        return view

    def kill(self) -> None:
        dump_files = [_local_dump_file(worker) for worker in self._workers]
        for worker in self._workers:
            ray.kill(worker)
        self._workers = []
        for path in dump_files:  # the killed workers' (empty) stack-dump files on this node
            try:
                if path and os.path.getsize(path) == 0:
                    os.remove(path)
            except OSError:
                pass


def create_colocated_worker_cls(class_dict: dict[str, ClassWithInitArgs]) -> RayClassWithInitArgs:
    """One Ray worker class that holds an instance of each role in one process (see
    :func:`verl.single_controller.base.colocate.create_colocated_worker_cls`)."""
    worker_cls = colocated_worker_class(class_dict)
    combined = RayClassWithInitArgs(worker_cls)
    combined.colocated_classes = dict(worker_cls.colocated_classes)
    return combined
