"""Stop a call that runs past its deadline: the one mechanism behind the reward managers' per-call time limit
and the local worker group's watchdog.

:func:`call_with_deadline` runs ``fn()`` in the calling thread (so a scorer keeps its thread-bound state, signal
handlers and ``threading.local`` data). One watchdog thread tracks every armed deadline; when one passes while
its call still runs it

1. calls ``on_expire`` once (in the watchdog thread: the place to report what is stuck and dump stacks), then
2. interrupts the call: in the main thread with a signal whose handler raises (this also breaks ``time.sleep``,
   lock and ``Event`` waits, blocking reads and ``subprocess`` waits), in other threads with
   ``PyThreadState_SetAsyncExc`` (pure-Python code only). The interrupt is an internal ``BaseException``, so a
   callee's ``except Exception`` cannot swallow it, and it is repeated every ``refire_s`` while the call is still
   inside (a callee with a bare ``except:``);
3. with ``hard_exit_after_s``, ends the process (``os._exit``) when the call is still stuck that long after the
   deadline: code spinning inside a C extension, which neither returns to Python nor wakes on a signal, cannot
   be stopped any other way in-process. When such code also holds the GIL (a catastrophic regular expression),
   no Python thread can run at all; :func:`faulthandler.dump_traceback_later`, armed for the same moment, runs
   in C and dumps every thread's stack before it exits the process.

The caller gets ``make_exc()`` raised where ``fn()`` was called. Standard library only.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DeadlineEntry", "call_with_deadline", "interrupt_signal"]

T = TypeVar("T")


class _Interrupted(BaseException):
    """Raised inside a call whose deadline passed (converted to the caller's exception on the way out)."""


def interrupt_signal() -> int | None:
    """The signal used to interrupt the main thread (a real-time one where the OS has them), or ``None``."""
    if hasattr(signal, "SIGRTMIN") and hasattr(signal, "pthread_kill"):
        return signal.SIGRTMIN + 5
    return getattr(signal, "SIGUSR2", None) if hasattr(signal, "pthread_kill") else None


class DeadlineEntry:
    """One armed deadline (what ``on_expire`` receives)."""

    __slots__ = ("due", "thread_id", "is_main", "on_expire", "refire_s", "hard_exit_at", "exit_code",
                 "active", "expired", "next_fire", "started", "label")

    def __init__(self, seconds: float, on_expire, refire_s: float, hard_exit_after_s: float | None, exit_code: int,
                 label: str = "the call"):
        now = time.monotonic()
        self.label = label
        self.started = now
        self.due = now + seconds
        self.thread_id = threading.get_ident()
        self.is_main = threading.current_thread() is threading.main_thread()
        self.on_expire = on_expire
        self.refire_s = refire_s
        self.hard_exit_at = None if hard_exit_after_s is None else self.due + hard_exit_after_s
        self.exit_code = exit_code
        self.active = True
        self.expired = False
        self.next_fire = self.due


class _Watchdog:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.entries: list[DeadlineEntry] = []
        self.thread: threading.Thread | None = None

    def add(self, entry: DeadlineEntry) -> None:
        with self.cond:
            self.entries.append(entry)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="verl-deadline-watchdog", daemon=True)
                self.thread.start()
            self.cond.notify()

    def remove(self, entry: DeadlineEntry) -> None:
        with self.cond:
            entry.active = False
            if entry in self.entries:
                self.entries.remove(entry)

    def wake(self) -> None:
        with self.cond:
            self.cond.notify()

    def innermost_expired(self, thread_id: int) -> DeadlineEntry | None:
        for entry in reversed(list(self.entries)):
            if entry.thread_id == thread_id and entry.active and entry.expired:
                return entry
        return None

    def _run(self) -> None:
        while True:
            with self.cond:
                now = time.monotonic()
                due = [e for e in self.entries if e.active and e.next_fire <= now]
                if not due:
                    upcoming = [e.next_fire - now for e in self.entries if e.active]
                    idle_check = _BACKSTOP.cancel_if_idle()
                    if idle_check is not None:
                        upcoming.append(idle_check)
                    self.cond.wait(timeout=min(upcoming) if upcoming else None)
                    continue
                for entry in due:
                    entry.next_fire = now + entry.refire_s
            for entry in due:
                self._fire(entry)

    def _fire(self, entry: DeadlineEntry) -> None:
        if not entry.expired:
            entry.expired = True
            if entry.on_expire is not None:
                try:
                    entry.on_expire(entry)
                except Exception as exc:  # a failing report must not stop the interrupt
                    print(f"deadline: on_expire failed: {exc!r}", file=sys.stderr, flush=True)
        if not entry.active:
            return
        if entry.hard_exit_at is not None and time.monotonic() >= entry.hard_exit_at:
            print(f"error: {entry.label} is still running {entry.hard_exit_at - entry.due:.0f} s after its time limit "
                  f"of {entry.due - entry.started:g} s and cannot be interrupted (it is stuck inside native code); "
                  f"exiting (code {entry.exit_code}) instead of hanging", file=sys.stderr, flush=True)
            try:
                import faulthandler

                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            except Exception:
                pass
            os._exit(entry.exit_code)
        sig = interrupt_signal()
        if entry.is_main and sig is not None and _HANDLER_INSTALLED.is_set():
            signal.pthread_kill(entry.thread_id, sig)
        else:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(entry.thread_id), ctypes.py_object(_Interrupted))


_WATCHDOG = _Watchdog()
_HANDLER_INSTALLED = threading.Event()


def _on_signal(signum: int, frame: Any) -> None:
    if _WATCHDOG.innermost_expired(threading.get_ident()) is not None:
        raise _Interrupted()


def _install_handler() -> bool:
    """Install the interrupt handler (main thread only); False when the signal is taken by someone else."""
    if _HANDLER_INSTALLED.is_set():
        return True
    sig = interrupt_signal()
    if sig is None or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(sig) not in (signal.SIG_DFL, None):
        return False
    signal.signal(sig, _on_signal)
    _HANDLER_INSTALLED.set()
    return True


class _Backstop:
    """faulthandler's one C-level timer, kept pointing at (a little after) the earliest armed hard exit.

    Arming the timer starts a thread and cancelling it joins one (~0.2 ms); a reward manager makes thousands of
    short calls per step, so the timer is re-armed only when the earliest hard exit moves past it or falls more
    than :attr:`SLACK_S` before it, and cancelled by the watchdog thread once no call has needed it for
    :attr:`IDLE_CANCEL_S` (a process stuck with the GIL held cannot run that thread, which is the case the timer
    is for: it fires only a full grace period after a deadline).
    """

    SLACK_S = 10.0
    IDLE_CANCEL_S = 1.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dues: list[float] = []
        self.armed_at: float | None = None
        self.idle_since: float | None = None

    def _arm(self, at: float) -> None:
        stream = sys.__stderr__
        try:
            stream.fileno()
        except (AttributeError, OSError, ValueError):
            return
        faulthandler.dump_traceback_later(max(0.5, at - time.monotonic()), exit=True, file=stream)
        self.armed_at = at

    def push(self, due: float) -> None:
        with self.lock:
            self.dues.append(due)
            self.idle_since = None
            earliest = min(self.dues)
            if self.armed_at is None or self.armed_at < earliest or self.armed_at > earliest + self.SLACK_S:
                self._arm(earliest + self.SLACK_S / 2)

    def pop(self, due: float) -> None:
        with self.lock:
            if due in self.dues:
                self.dues.remove(due)
            if not self.dues:
                self.idle_since = time.monotonic()
            elif self.armed_at is not None and self.armed_at > min(self.dues) + self.SLACK_S:
                self._arm(min(self.dues) + self.SLACK_S / 2)

    def cancel_if_idle(self) -> float | None:
        """Cancel the timer when nothing has needed it for a while; how long until to check again, or None."""
        with self.lock:
            if self.armed_at is None or self.idle_since is None:
                return None
            left = self.idle_since + self.IDLE_CANCEL_S - time.monotonic()
            if left > 0:
                return left
            faulthandler.cancel_dump_traceback_later()
            self.armed_at = self.idle_since = None
            return None


_BACKSTOP = _Backstop()


def _before_fork() -> None:
    # faulthandler's timer thread does not exist in a forked child, and re-arming or cancelling the inherited timer
    # there waits for it forever: stop it around the fork (and take the locks, so the child gets them free)
    _WATCHDOG.cond.acquire()
    _BACKSTOP.lock.acquire()
    if _BACKSTOP.armed_at is not None:
        faulthandler.cancel_dump_traceback_later()


def _after_fork_in_parent() -> None:
    if _BACKSTOP.armed_at is not None:
        _BACKSTOP._arm(_BACKSTOP.armed_at)
    _BACKSTOP.lock.release()
    _WATCHDOG.cond.release()


def _after_fork_in_child() -> None:
    # the parent's calls and its watchdog thread are not in the child: start empty
    _BACKSTOP.lock = threading.Lock()
    _BACKSTOP.dues, _BACKSTOP.armed_at, _BACKSTOP.idle_since = [], None, None
    _WATCHDOG.cond = threading.Condition()
    _WATCHDOG.entries, _WATCHDOG.thread = [], None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def _clear_async_exc(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


def call_with_deadline(
    fn: Callable[[], T],
    seconds: float | None,
    make_exc: Callable[[DeadlineEntry], BaseException],
    on_expire: Callable[[DeadlineEntry], None] | None = None,
    refire_s: float = 1.0,
    hard_exit_after_s: float | None = None,
    exit_code: int = 1,
    label: str = "the call",
) -> T:
    """``fn()``, or ``make_exc(entry)`` raised when it is still running ``seconds`` after the start.

    Args:
        fn: the call (run in this thread).
        seconds: the limit; ``None`` or ``<= 0`` runs ``fn()`` without one.
        make_exc: builds the exception raised to the caller on a timeout.
        on_expire: called once in the watchdog thread when the deadline passes, before the interrupt.
        refire_s: how often the interrupt is repeated while the call is still inside.
        hard_exit_after_s: end the process with ``exit_code`` when the call is still stuck this long after the
            deadline (``None``: never), after printing what is stuck (``label``) and every thread's stack.
        label: what the call is, for that message.
    """
    if not seconds or seconds <= 0:
        return fn()
    entry = DeadlineEntry(seconds, on_expire, refire_s, hard_exit_after_s, exit_code, label)
    if entry.is_main:
        _install_handler()
    _WATCHDOG.add(entry)
    backstop = None if entry.hard_exit_at is None else entry.hard_exit_at + 5.0  # after the watchdog's own exit
    if backstop is not None:
        _BACKSTOP.push(backstop)
    try:
        try:
            return fn()
        finally:
            entry.active = False  # an interrupt arriving from here on is ignored by the handler
    except _Interrupted:
        if entry.expired:
            raise make_exc(entry) from None
        raise
    finally:
        _WATCHDOG.remove(entry)
        if backstop is not None:
            _BACKSTOP.pop(backstop)
            _WATCHDOG.wake()
        if not entry.is_main and entry.expired:
            _clear_async_exc(entry.thread_id)
