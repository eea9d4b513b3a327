"""Run calls in worker processes with a per-call timeout; a call that overruns gets its process killed.

``concurrent.futures`` cannot stop a running call, so a hung score function would hold its worker forever.
Here each worker process runs one call at a time; the parent tracks when each call started, kills
(SIGKILL) the worker of a call past its timeout, and starts a fresh worker for the remaining calls. A
worker that dies (segfault, ``os._exit``, out of memory) fails only the call it was running.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import pickle
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["CallOutcome", "run_calls"]


@dataclass
class CallOutcome:
    """``status``: ``"ok"`` (``value`` set), ``"error"`` (``error`` text, ``exception`` when picklable,
    ``traceback``), ``"timeout"``, or ``"crashed"`` (the worker process died)."""

    status: str
    value: Any = None
    error: str | None = None
    exception: BaseException | None = None
    traceback: str | None = None


def _worker_main(conn: Connection, fn: Callable[..., Any]) -> None:
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        index, args, kwargs = task
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_await(value))
            reply = (index, "ok", value, None, None, None)
        except BaseException as exc:  # report everything, even SystemExit, and keep serving
            message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            reply = (index, "error", None, message, exc if _round_trips(exc) else None, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:  # the value or the exception does not pickle
            if reply[1] == "ok":
                why = f"result of type {type(reply[2]).__name__} cannot be pickled: {exc}"
                conn.send((index, "error", None, why, None, None))
            else:
                conn.send((index, "error", None, reply[3], None, reply[5]))


def _round_trips(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
        return True
    except Exception:
        return False


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _default_context() -> str:
    # fork starts workers in milliseconds with the score function already imported; elsewhere use spawn
    return "fork" if sys.platform.startswith("linux") else "spawn"


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[..., Any]):
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child_conn, fn), daemon=True)
        self.process.start()
        child_conn.close()
        self.index: int | None = None
        self.started = 0.0

    def assign(self, index: int, args: tuple, kwargs: dict) -> None:
        self.index, self.started = index, time.monotonic()
        self.conn.send((index, args, kwargs))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=5)
        self.kill()


def run_calls(
    fn: Callable[..., Any],
    calls: Sequence[tuple[tuple, dict]],
    num_workers: int | None = None,
    timeout_s: float | None = 300.0,
    mp_context: str | None = None,
) -> list[CallOutcome]:
    """Run ``fn(*args, **kwargs)`` for every ``(args, kwargs)`` of ``calls`` in worker processes.

    Args:
        fn: the function (sync or async; with a non-fork context it must be picklable).
        num_workers: worker processes (default ``min(8, cpu_count)``); never more than there are calls.
        timeout_s: a call running longer is stopped (its worker killed) and reported as ``"timeout"``; ``None``:
            no limit.
        mp_context: ``"fork"`` (Linux default), ``"spawn"`` or ``"forkserver"``.

    Returns:
        one :class:`CallOutcome` per call, in order.
    """
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive (or None for no limit), got {timeout_s}")
    outcomes: list[CallOutcome | None] = [None] * len(calls)
    if not calls:
        return []
    ctx = multiprocessing.get_context(mp_context or _default_context())
    n_workers = max(1, min(num_workers or min(8, os.cpu_count() or 1), len(calls)))
    pending = deque(range(len(calls)))
    workers = [_Worker(ctx, fn) for _ in range(n_workers)]
    try:
        for w in workers:
            _next_task(w, pending, calls)
        while any(w.index is not None for w in workers):
            busy = [w for w in workers if w.index is not None]
            left = None if timeout_s is None else max(0.0, min(w.started for w in busy) + timeout_s - time.monotonic())
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], left)
            for i, w in enumerate(workers):
                if w.index is None:
                    continue
                outcome = _poll(w, timeout_s)
                if outcome is None:
                    continue
                outcomes[w.index] = outcome
                w.index = None
                if outcome.status in ("timeout", "crashed"):
                    w.kill()
                    workers[i] = w = _Worker(ctx, fn) if pending else w
                if pending and w.process.is_alive():
                    _next_task(w, pending, calls)
    finally:
        for w in workers:
            if w.process.is_alive():
                w.stop()
    return outcomes  # type: ignore[return-value]


def _next_task(w: _Worker, pending: deque, calls: Sequence[tuple[tuple, dict]]) -> None:
    if pending:
        index = pending.popleft()
        args, kwargs = calls[index]
        w.assign(index, tuple(args), dict(kwargs))


def _poll(w: _Worker, timeout_s: float | None) -> CallOutcome | None:
    """The outcome of ``w``'s current call if it is known now (a reply, a death, or an overrun), else ``None``."""
    if w.conn.poll():
        try:
            _, status, value, error, exc, trace = w.conn.recv()
        except Exception as e:  # EOF, a broken pipe, or a reply that does not unpickle
            return CallOutcome("crashed", error=f"lost the worker's reply: {e!r}")
        return CallOutcome(status, value, error, exc, trace)
    if not w.process.is_alive():
        return CallOutcome("crashed", error=f"worker process died (exit code {w.process.exitcode})")
    if timeout_s is not None and time.monotonic() - w.started >= timeout_s:
        return CallOutcome("timeout", error=f"no result after {timeout_s:g} s")
    return None
