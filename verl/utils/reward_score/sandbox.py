"""Run untrusted Python (a model's program) in a subprocess with time, memory and network limits.

Layers of protection, each independent of the others:

- **Wall clock**: the parent kills the child's whole process group after ``timeout_s``.
- **Resource limits** (``resource.setrlimit``, set by a trusted wrapper inside the child before the user's code
  runs): CPU seconds (``RLIMIT_CPU``), address space (``RLIMIT_AS``, so a memory bomb gets ``MemoryError``),
  file size (``RLIMIT_FSIZE``, which also caps stdout/stderr: they go to files, not pipes), no core dumps.
- **No network**: when the OS allows it, the child runs in a fresh network namespace (``unshare --net``: only a
  loopback device that is down, so nothing can be reached, not even the host's ``127.0.0.1``). Independently,
  a Python audit hook (PEP 578) installed before the user's code refuses socket creation/connection,
  process spawning (``subprocess``, ``os.system``, ``os.fork``, ``exec``) and ``ctypes`` symbol lookups.
  The audit hook alone is a best-effort fallback (C extensions can bypass it); the namespace is the real barrier.
- **Files**: the same audit hook refuses writing, deleting, renaming or changing files outside the working
  directory (best effort: a guard against careless programs, not a jail; the child runs as the caller's user).
- **Temporary working directory**, removed afterwards; an almost empty environment; ``python -I -B`` (isolated
  mode: no ``PYTHON*`` variables, no user site-packages, script directory not on ``sys.path``; no ``.pyc``
  writes).

Standard library only.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

__all__ = ["SandboxLimits", "SandboxResult", "network_namespace_prefix", "run_python"]


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one run of :func:`run_python`."""

    timeout_s: float = 5.0
    """Wall-clock limit in seconds; the process group is killed when it passes."""
    cpu_time_s: float | None = None
    """CPU-time limit in seconds (``RLIMIT_CPU``); ``None`` means ``ceil(timeout_s) + 1``."""
    memory_mb: int = 512
    """Address-space limit in MiB (``RLIMIT_AS``); allocations beyond it raise ``MemoryError``."""
    output_mb: int = 8
    """Largest file the program may write, stdout and stderr included (``RLIMIT_FSIZE``), in MiB."""
    isolate_network: bool = True
    """Run in a fresh network namespace when the OS allows it (see :func:`network_namespace_prefix`)."""
    python_guard: bool = True
    """Install the audit hook that blocks sockets, subprocesses, fork, ctypes and file changes outside the
    working directory inside the child."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.memory_mb <= 0 or self.output_mb <= 0:
            raise ValueError(f"sandbox limits must be positive, got {self}")


@dataclass
class SandboxResult:
    """What happened to one sandboxed run.

    ``status`` is one of ``"ok"`` (exit code 0), ``"runtime_error"`` (non-zero exit or a signal),
    ``"timeout"`` (wall clock or CPU limit), ``"memory"`` (``MemoryError``) or ``"output_limit"``.
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    network_isolation: str
    """``"netns"`` when the child ran in its own network namespace, else ``"audit-hook"`` or ``"none"``."""


# Runs inside the child before the user's code: set limits, install the audit hook, run the solution file.
_WRAPPER = r"""
import json, resource, runpy, sys
cfg = json.loads(sys.argv[1])
def _limit(kind, soft, hard):
    try:
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):
        pass
_limit(resource.RLIMIT_CPU, cfg["cpu"], cfg["cpu"] + 1)
_limit(resource.RLIMIT_AS, cfg["mem"], cfg["mem"])
_limit(resource.RLIMIT_FSIZE, cfg["fsize"], cfg["fsize"])
_limit(resource.RLIMIT_CORE, 0, 0)
if cfg["guard"]:
    _blocked = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
                "socket.sendmsg", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                "os.fork", "os.forkpty", "ctypes.dlsym", "ctypes.dlsym/handle", "pty.spawn")
    import os
    _work = os.getcwd()
    _write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    # which arguments of these events are paths that get modified
    _path_events = {"os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.chmod": (0,), "os.chown": (0,),
                    "os.truncate": (0,), "os.symlink": (1,), "os.link": (1,), "os.mkdir": (0,), "os.utime": (0,),
                    "shutil.rmtree": (0,)}
    def _inside(path):
        if isinstance(path, int):
            return True  # an already open descriptor
        real = os.path.realpath(os.fsdecode(path))
        return real == _work or real.startswith(_work + os.sep) or real == os.devnull
    def _hook(event, args):
        if event in _blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args[2] & _write_flags and not _inside(args[0]):
            raise PermissionError(f"sandbox: writing {args[0]!r} outside the working directory is not allowed")
        if event in _path_events and not all(_inside(args[i]) for i in _path_events[event]):
            raise PermissionError(f"sandbox: {event} outside the working directory is not allowed")
    sys.addaudithook(_hook)
sys.argv = ["solution.py"]
runpy.run_path("solution.py", run_name="__main__")
"""


@functools.lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """The command prefix that starts a program in a new, empty network namespace, or ``()``.

    Tries ``unshare --net`` (needs root / CAP_SYS_ADMIN) and then ``unshare --user --map-root-user --net``
    (unprivileged user namespaces). The answer is probed once per process.
    """
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return ()
    for prefix in ((unshare, "--net"), (unshare, "--user", "--map-root-user", "--net")):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return (*prefix, "--")
    return ()


def _status(returncode: int | None, timed_out: bool, stderr: str, output_full: bool) -> str:
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"
    # Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails with EFBIG instead of killing the process
    if returncode == -signal.SIGXFSZ or (returncode != 0 and output_full):
        return "output_limit"
    if returncode == 0:
        return "ok"
    if "MemoryError" in stderr:
        return "memory"
    return "runtime_error"


def _read_capped(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def run_python(
    code: str,
    stdin: str = "",
    limits: SandboxLimits | None = None,
    python: str | None = None,
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a sandboxed Python subprocess, feeding it ``stdin``.

    Args:
        code: the program's source.
        stdin: text sent to its standard input.
        limits: :class:`SandboxLimits` (defaults: 5 s wall, 512 MiB, network isolated, audit hook on).
        python: interpreter to run (default: this one, so the same packages are importable).

    Returns:
        :class:`SandboxResult` with the captured stdout/stderr (each capped at ``limits.output_mb``).
    """
    limits = limits or SandboxLimits()
    cpu = int(limits.cpu_time_s if limits.cpu_time_s is not None else -(-limits.timeout_s // 1) + 1)
    cfg = {
        "cpu": max(1, cpu),
        "mem": limits.memory_mb << 20,
        "fsize": limits.output_mb << 20,
        "guard": limits.python_guard,
    }
    prefix = network_namespace_prefix() if limits.isolate_network else ()
    isolation = "netns" if prefix else ("audit-hook" if limits.python_guard else "none")
    root = tempfile.mkdtemp(prefix="verl_sandbox_")
    try:
        work = os.path.join(root, "work")
        os.mkdir(work)
        with open(os.path.join(work, "solution.py"), "w", encoding="utf-8") as f:
            f.write(code)
        out_path, err_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
        cmd = [*prefix, python or sys.executable, "-I", "-B", "-c", _WRAPPER, json.dumps(cfg)]
        start = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                cmd, cwd=work, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=True
            )
            timed_out = False
            try:
                proc.communicate(stdin.encode("utf-8"), timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            except BrokenPipeError:  # the program exited without reading its input
                pass
            finally:
                if proc.returncode is None:  # still running: timed out (or we were interrupted)
                    _kill_group(proc)
        wall = time.monotonic() - start
        cap = limits.output_mb << 20
        output_full = max(os.path.getsize(out_path), os.path.getsize(err_path)) >= cap
        stdout, stderr = _read_capped(out_path, cap), _read_capped(err_path, cap)
        return SandboxResult(
            status=_status(proc.returncode, timed_out, stderr, output_full),
            returncode=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            wall_s=wall,
            network_isolation=isolation,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's session (it and anything it started) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def limits_from_dict(values: dict) -> SandboxLimits:
    """Build :class:`SandboxLimits` from a plain dict, naming any unknown key."""
    known = set(asdict(SandboxLimits()))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown sandbox limit(s) {unknown}; known: {sorted(known)}")
    return SandboxLimits(**values)
