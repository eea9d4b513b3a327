"""``LocalWorkerGroup``: the worker-group interface with its one worker in the driver's process.

A run that is one worker process on one device does not need Ray: the driver builds the worker classes
itself and calls their ``@register`` methods directly. Dispatch and collect are the base class's (the very
functions a Ray group uses), so a method gets the same per-rank arguments and returns the same result; only
the transport differs: no actor, no pickling. DataProto arguments are handed over in fresh containers
(tensors shared, dicts and ``meta_info`` copied), so a worker that sets a key on its input does not change
the driver's object, as with a copy that travelled to another process.

The worker joins a one-rank torch.distributed world exactly as a Ray worker joins its group's: from
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``, which :func:`single_process_world` puts
in this process's environment (engines such as vLLM's external launcher read them too) and restores after.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from verl.protocol import DataProto, TensorBatch
from verl.single_controller.base.worker import find_free_port
from verl.single_controller.base.worker_group import ClassWithInitArgs, WorkerGroup

__all__ = ["LocalWorkerGroup", "single_process_world"]

WORLD_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def single_process_world() -> Iterator[dict[str, str]]:
    """This process as rank 0 of a one-rank world, in ``os.environ`` while the block runs (restored after)."""
    saved = {k: os.environ.get(k) for k in WORLD_ENV}
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(find_free_port())}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _handed_over(value: Any) -> Any:
    """What a worker receives for ``value``: a DataProto in new containers (same tensors), others as they are."""
    if not isinstance(value, DataProto):
        return value
    out = object.__new__(type(value))  # not copy.copy: that would go through DataProto's pickling state
    out.__dict__.update(value.__dict__)
    out.batch = TensorBatch(dict(value.batch.items()), batch_size=value.batch._n)
    out.non_tensor_batch = dict(value.non_tensor_batch)
    out.meta_info = copy.deepcopy(value.meta_info)
    return out


class LocalWorkerGroup(WorkerGroup):
    """One worker of ``cls_with_init`` built in this process; its ``@register`` methods become this group's.

    Args:
        cls_with_init: the worker class and constructor arguments (a colocated class for the hybrid engine).
        name_prefix: the worker's name in messages (``<prefix>_0``).

    The process's environment holds the one-rank world (see :func:`single_process_world`) until :meth:`kill`,
    which also closes the worker and leaves torch.distributed as it found it.
    """

    def __init__(self, cls_with_init: ClassWithInitArgs | None = None, name_prefix: str | None = None):
        super().__init__()
        self.cls_with_init = cls_with_init
        self.name_prefix = name_prefix or (cls_with_init.cls.__name__ if cls_with_init else "local")
        self._workers: list[Any] = []
        self._world = None
        self._owns_dist = False
        if cls_with_init is None:  # an empty group; `spawn` fills views of an existing one
            return
        import torch.distributed as dist

        self._world = single_process_world()
        self._world.__enter__()
        self._owns_dist = not (dist.is_available() and dist.is_initialized())
        try:
            self._workers = [cls_with_init()]
        except BaseException:
            self.kill()
            raise
        self._worker_names = [f"{self.name_prefix}_0"]
        self._bind_worker_methods(cls_with_init.cls)

    @property
    def workers(self) -> list[Any]:
        """The worker objects themselves (in-process)."""
        return list(self._workers)

    def _execute(self, method_name: str, ranks: list[int], args: tuple, kwargs: dict) -> list:
        # runs now: a non-blocking call's future only hands the finished result over
        return [
            getattr(self._workers[r], method_name)(*(_handed_over(a[i]) for a in args),
                                                   **{k: _handed_over(v[i]) for k, v in kwargs.items()})
            for i, r in enumerate(ranks)
        ]

    def _wait(self, method_name: str, ranks: list[int], handles: list) -> list:
        return handles

    def _make_view(self, role: str) -> LocalWorkerGroup:
        view = LocalWorkerGroup(name_prefix=f"{self.name_prefix}.{role}")
        view.cls_with_init = self.cls_with_init
        view._workers = self._workers
        return view

    def kill(self) -> None:
        """Close the worker (its engines release their memory), leave the world, restore the environment."""
        import gc

        import torch.distributed as dist

        for worker in self._workers:
            close = getattr(worker, "close", None)
            if callable(close):
                close()
        self._workers = []
        gc.collect()
        if self._owns_dist and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_dist = False
        if self._world is not None:
            self._world.__exit__(None, None, None)
            self._world = None
