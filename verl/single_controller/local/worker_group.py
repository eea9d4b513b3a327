"""``LocalWorkerGroup``: the worker-group interface with its one worker in the driver's process.

A run that is one worker process on one device does not need Ray: the driver builds the worker classes
itself and calls their ``@register`` methods directly. Dispatch and collect are the base class's (the very
functions a Ray group uses), so a method gets the same per-rank arguments and returns the same result; only
the transport differs: no actor, no pickling. DataProto arguments are handed over in fresh containers
(tensors shared, dicts and ``meta_info`` copied), so a worker that sets a key on its input does not change
the driver's object, as with a copy that travelled to another process.

With ``call_timeout_s`` each call runs under the watchdog (:func:`verl.utils.deadline.call_with_deadline`): past
the limit, every thread's stack is printed and the call is interrupted with
:class:`~verl.single_controller.base.watchdog.WorkerCallTimeoutError`; a call stuck in native code that cannot
be interrupted ends the process :data:`HARD_EXIT_GRACE_S` later, so the run never hangs.

The worker joins a one-rank torch.distributed world exactly as a Ray worker joins its group's: from
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``, which :func:`single_process_world` puts
in this process's environment (engines such as vLLM's external launcher read them too) and restores after.
"""

from __future__ import annotations

import copy
import faulthandler
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from verl.protocol import DataProto
from verl.single_controller.base.watchdog import WorkerCallTimeoutError, timeout_message
from verl.single_controller.base.worker import WORLD_ENV, find_free_port
from verl.single_controller.base.worker_group import ClassWithInitArgs, WorkerGroup
from verl.utils.deadline import call_with_deadline

__all__ = ["HARD_EXIT_GRACE_S", "LocalWorkerGroup", "single_process_world"]

HARD_EXIT_GRACE_S = 30.0
"""Seconds after the watchdog's limit at which a call that could not be interrupted ends the process."""



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
    out.batch = value.batch.copy()
    out.non_tensor_batch = dict(value.non_tensor_batch)
    out.meta_info = copy.deepcopy(value.meta_info)
    return out


class LocalWorkerGroup(WorkerGroup):
    """One worker of ``cls_with_init`` built in this process; its ``@register`` methods become this group's.

    Args:
        cls_with_init: the worker class and constructor arguments (a colocated class for the hybrid engine).
        name_prefix: the worker's name in messages (``<prefix>_0``).
        call_timeout_s: the watchdog's limit on each method call in seconds (``None``/0: off).

    The process's environment holds the one-rank world (see :func:`single_process_world`) until :meth:`kill`,
    which also closes the worker and leaves torch.distributed as it found it.
    """

    def __init__(self, cls_with_init: ClassWithInitArgs | None = None, name_prefix: str | None = None,
                 call_timeout_s: float | None = None):
        super().__init__()
        self.call_timeout_s = call_timeout_s
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
        results = []
        for i, r in enumerate(ranks):
            method = getattr(self._workers[r], method_name)
            call_args = [_handed_over(a[i]) for a in args]
            call_kwargs = {k: _handed_over(v[i]) for k, v in kwargs.items()}
            results.append(self._watched(method_name, r, lambda: method(*call_args, **call_kwargs)))
        return results

    def _watched(self, method_name: str, rank: int, call):
        """``call()`` under the watchdog: past ``call_timeout_s`` the stacks are printed and it is interrupted."""
        if not self.call_timeout_s:
            return call()
        name = self._worker_names[rank] if rank < len(self._worker_names) else f"{self.name_prefix}_{rank}"
        report: dict[str, str] = {}

        def on_expire(entry) -> None:  # in the watchdog thread, while the call is still stuck
            frame = sys._current_frames().get(entry.thread_id)
            stuck = "".join(traceback.format_stack(frame)) if frame is not None else "(no Python frame)"
            report["message"] = timeout_message(method_name, [(name, rank)], self.call_timeout_s, 0, 1,
                                                {f"{name} (the stuck call)": stuck.rstrip()})
            print(f"error: worker {name} (rank {rank}) did not return from {method_name} within "
                  f"{self.call_timeout_s:g} s (trainer.worker_call_timeout_s); interrupting it. Every thread of this "
                  "process:", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)

        def make_exc(entry) -> WorkerCallTimeoutError:
            return WorkerCallTimeoutError(report.get("message") or timeout_message(
                method_name, [(name, rank)], self.call_timeout_s, 0, 1))

        return call_with_deadline(call, self.call_timeout_s, make_exc, on_expire=on_expire,
                                  hard_exit_after_s=HARD_EXIT_GRACE_S,
                                  label=f"worker {name} (rank {rank}) in {method_name}")

    def _wait(self, method_name: str, ranks: list[int], handles: list, started: float | None = None) -> list:
        return handles

    def _make_view(self, role: str) -> LocalWorkerGroup:
        view = LocalWorkerGroup(name_prefix=f"{self.name_prefix}.{role}", call_timeout_s=self.call_timeout_s)
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
