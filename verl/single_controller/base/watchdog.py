"""The watchdog on worker calls: a call that does not return within ``call_timeout_s`` is reported naming the
worker, its rank and the method, with the Python stacks of every thread of the stuck workers, and the call
raises :class:`WorkerCallTimeoutError` instead of blocking the driver forever (``trainer.worker_call_timeout_s``).

How the stacks are taken: every :class:`~verl.single_controller.base.Worker` process registers
:mod:`faulthandler` on :data:`STACK_SIGNAL` (:func:`install_stack_dump_handler`), writing to
``<dump dir>/<pid>.txt``. faulthandler's handler runs in C, so it answers even when the worker's Python thread
is blocked in native code (a collective that never completes, a stuck kernel launch) or holds the GIL. The
driver sends the signal to the stuck worker's process (:func:`dump_process_stacks`; on another node, from a
small Ray task placed there) and reads what was written. In local mode the worker is the driver's own thread:
the watchdog thread dumps every thread of the process directly.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = [
    "STACK_DUMP_DIR_ENV",
    "STACK_SIGNAL",
    "WorkerCallTimeoutError",
    "dump_process_stacks",
    "install_stack_dump_handler",
    "stack_dump_dir",
    "timeout_message",
]

STACK_SIGNAL = signal.SIGRTMIN + 6 if hasattr(signal, "SIGRTMIN") else getattr(signal, "SIGUSR2", None)
"""The signal on which a worker process writes every thread's Python stack (faulthandler)."""
STACK_DUMP_DIR_ENV = "VERL_STACK_DUMP_DIR"

_DUMP_FILE = None  # kept open: faulthandler writes to its descriptor from the signal handler


class WorkerCallTimeoutError(TimeoutError):
    """A worker call ran past the watchdog's limit; the message names the worker, rank and method and holds the
    stuck workers' stacks."""


def stack_dump_dir() -> str:
    """Where worker processes write their stack dumps (``$VERL_STACK_DUMP_DIR`` or ``<tmp>/verl_stacks``)."""
    return os.environ.get(STACK_DUMP_DIR_ENV) or os.path.join(tempfile.gettempdir(), "verl_stacks")


def install_stack_dump_handler() -> str | None:
    """Make this process write all its threads' stacks to ``<dump dir>/<pid>.txt`` on :data:`STACK_SIGNAL`
    (once per process); returns that path, or ``None`` where the platform has no such signal."""
    global _DUMP_FILE
    if STACK_SIGNAL is None or not hasattr(faulthandler, "register"):
        return None
    path = os.path.join(stack_dump_dir(), f"{os.getpid()}.txt")
    if _DUMP_FILE is not None and _DUMP_FILE.name == path:
        return path
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _DUMP_FILE = open(path, "a", encoding="utf-8")  # noqa: SIM115 (must stay open)
        faulthandler.register(STACK_SIGNAL, file=_DUMP_FILE, all_threads=True, chain=False)
    except (OSError, RuntimeError, ValueError):
        return None
    atexit.register(_remove_if_empty, path)
    return path


def _remove_if_empty(path: str) -> None:
    try:
        if os.path.getsize(path) == 0:
            os.remove(path)
    except OSError:
        pass


def dump_process_stacks(pid: int, dump_dir: str | None = None, wait_s: float = 5.0) -> str:
    """Signal process ``pid`` (on this node) to dump its threads' stacks and return what it wrote.

    Falls back to ``py-spy dump`` when the process has no handler registered (and py-spy is installed).
    """
    path = os.path.join(dump_dir or stack_dump_dir(), f"{pid}.txt")
    if STACK_SIGNAL is None or not os.path.exists(path):
        return _py_spy(pid) or f"(no stack dump handler in process {pid})"
    start = os.path.getsize(path)
    try:
        os.kill(pid, STACK_SIGNAL)
    except OSError as exc:
        return f"(could not signal process {pid}: {exc})"
    deadline, last = time.monotonic() + wait_s, start
    while time.monotonic() < deadline:  # wait until the dump has been written and stopped growing
        time.sleep(0.2)
        size = os.path.getsize(path)
        if size > start and size == last:
            break
        last = size
    with open(path, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        text = f.read().strip()
    return text or f"(process {pid} wrote no stack within {wait_s:g} s)"


def _py_spy(pid: int) -> str | None:
    import shutil
    import subprocess

    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(exe):
        return None
    try:
        out = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def timeout_message(method: str, stuck: Sequence[tuple[str, int]], timeout_s: float, done: int, total: int,
                    stacks: dict[str, str] | None = None) -> str:
    """The report: which workers (name, rank) are stuck in which method, for how long, and their stacks."""
    first_name, first_rank = stuck[0]
    others = ", ".join(f"{n} (rank {r})" for n, r in stuck[1:])
    lines = [
        f"worker {first_name} (rank {first_rank}) did not return from {method} within {timeout_s:g} s "
        f"(trainer.worker_call_timeout_s); {done} of {total} ranks returned"
        + (f"; also stuck: {others}" if others else ""),
        "a deadlocked collective, a stuck kernel or an endless loop in the worker; the run stops instead of "
        "hanging (raise trainer.worker_call_timeout_s if the call is merely slow, 0 turns the watchdog off)",
    ]
    for name, text in (stacks or {}).items():
        lines.append(f"--- stacks of {name} ---")
        lines.append(text)
    return "\n".join(lines)
