"""Run untrusted Python (a model's program) in an isolated subprocess with time, memory and process limits.

The isolation in force is chosen once per process, the strongest this machine allows (``SandboxLimits.isolation``
can require one), and logged; every result records it (``SandboxResult.isolation``). docs/advance/sandbox.md
describes each level and what it stops.

- ``bwrap`` (`bubblewrap <https://github.com/containers/bubblewrap>`_, Debian/Ubuntu package ``bubblewrap``):
  the program runs in its own user, mount, PID, network, IPC and UTS namespaces. Its file system is a fresh
  root holding only the system directories (``/usr``, ``/lib*``, ``/bin``) and the Python installation, read-only,
  plus ``/proc`` of its own PID namespace, a minimal ``/dev`` and its working directory ``/sandbox``: a
  size-limited tmpfs, the only writable place. Nothing of the trainer (code, data, checkpoints, credentials,
  ``/tmp``, ``$HOME``) exists in there; other processes are invisible and out of reach; there is no network,
  not even loopback. Creating further user namespaces is disabled.
- ``unshare`` (util-linux, where bubblewrap is missing): network and PID namespaces (plus a user namespace where
  unprivileged ones are allowed). The file system is *not* isolated: reads and writes outside the working
  directory are refused by the audit hook below, which is a guard, not a boundary.
- ``none``: resource limits and the audit hook only.

At every level:

- **Process count**: ``RLIMIT_NPROC`` (``max_processes``) counted per sandbox: per user namespace, or, when the
  trainer runs as root (whose processes the kernel never counts), by running the program under a uid of its own.
- **Wall clock**: the parent kills the whole process group (and with it the PID namespace) after ``timeout_s``.
- **Resource limits** set inside before the program runs: CPU seconds, address space (a memory bomb gets
  ``MemoryError``), file size (which also caps stdout/stderr: they go to files), no core dumps.
- **Audit hook** (PEP 578), the second layer: refuses sockets, subprocesses, ``fork``/``exec``/``posix_spawn``,
  signals to other processes, importing ``ctypes``/``_ctypes``/``_posixsubprocess``, ``sqlite3``, reading or
  listing files outside the working directory and the Python installation, and changing files outside the
  working directory. Python documents audit hooks as no security boundary (native code can bypass them): the
  namespaces are the boundary where they are available.
- An almost empty environment, ``python -I -B`` (isolated mode, no ``.pyc`` writes), a fresh working directory
  removed afterwards.

Standard library only.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

__all__ = [
    "ISOLATION_LEVELS",
    "Isolation",
    "SandboxLimits",
    "SandboxResult",
    "describe_isolation",
    "isolation_in_force",
    "network_namespace_prefix",
    "run_python",
]

logger = logging.getLogger(__name__)

ISOLATION_LEVELS = ("auto", "bwrap", "unshare", "none")
SANDBOX_DIR = "/sandbox"
_UID_BASE, _UID_SPAN = 1_600_000_000, 1 << 24  # uids for sandboxed programs when the trainer runs as root


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
    max_processes: int = 16
    """Most processes and threads the program may run at once (``RLIMIT_NPROC``, counted per sandbox)."""
    work_mb: int = 64
    """Size of the working directory (a tmpfs) with bubblewrap, in MiB."""
    isolate_network: bool = True
    """Run in a fresh network namespace (no network at all) when the OS allows it."""
    python_guard: bool = True
    """Install the audit hook (the second layer) inside the child."""
    isolation: str = "auto"
    """``auto`` (the strongest available: bwrap, then unshare, then none), or require ``bwrap``, ``unshare`` or
    ``none`` (a level that is not available raises ``RuntimeError``)."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.memory_mb <= 0 or self.output_mb <= 0 or self.work_mb <= 0:
            raise ValueError(f"sandbox limits must be positive, got {self}")
        if self.max_processes < 1:
            raise ValueError(f"sandbox max_processes must be >= 1, got {self.max_processes}")
        if self.isolation not in ISOLATION_LEVELS:
            raise ValueError(f"sandbox isolation={self.isolation!r}: use one of {list(ISOLATION_LEVELS)}")


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
    isolation: str = "none"
    """The isolation level in force: ``"bwrap"``, ``"unshare"`` or ``"none"``."""


@dataclass(frozen=True)
class Isolation:
    """How programs are run on this machine (probed once per process and setting, see :func:`isolation_in_force`)."""

    level: str
    """``bwrap``, ``unshare`` or ``none``."""
    tool: str = ""
    """The path of ``bwrap`` or ``unshare``."""
    own_uid: bool = False
    """Programs run under a uid of their own (the trainer runs as root)."""
    network: bool = False
    """A network namespace of its own."""
    user_ns: bool = False
    """A user namespace of its own."""
    filesystem: bool = False
    """A private file system (bwrap)."""
    nproc: bool = False
    """``RLIMIT_NPROC`` is counted per sandbox."""
    read_roots: tuple[str, ...] = field(default=(), compare=False)
    """Where the audit hook lets the program read (besides its working directory)."""

    @property
    def pid(self) -> bool:
        """A PID namespace of its own (other processes invisible and out of reach)."""
        return self.level in ("bwrap", "unshare")


# ----------------------------------------------------------------------------------------------- inside the child

# Runs inside the child before the user's code: set limits, install the audit hook, run the solution file.
_WRAPPER = r"""
import json, os, resource, runpy, sys
cfg = json.loads(sys.argv[1])
if cfg["reaper"]:  # first process of a PID namespace: run the program in a child, exit with 128+N if signal N killed it
    _child = os.fork()
    if _child:
        _, _status = os.waitpid(_child, 0)
        os._exit(128 + os.WTERMSIG(_status) if os.WIFSIGNALED(_status) else os.WEXITSTATUS(_status))
def _limit(kind, soft, hard):
    try:
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):
        pass
_limit(resource.RLIMIT_CPU, cfg["cpu"], cfg["cpu"] + 1)
_limit(resource.RLIMIT_AS, cfg["mem"], cfg["mem"])
_limit(resource.RLIMIT_FSIZE, cfg["fsize"], cfg["fsize"])
_limit(resource.RLIMIT_CORE, 0, 0)
if cfg["uid"] is not None:  # started as root inside bubblewrap's namespaces: become the program's own uid
    os.chown(".", cfg["uid"], cfg["uid"])
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
if cfg["nproc"]:
    _limit(resource.RLIMIT_NPROC, cfg["nproc"], cfg["nproc"])
if cfg["guard"]:
    _blocked = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
                "socket.sendmsg", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                "os.fork", "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.dlopen",
                "ctypes.dlsym", "ctypes.dlsym/handle", "pty.spawn", "sqlite3.connect", "gc.get_objects",
                "gc.get_referrers", "gc.get_referents")
    # subprocess (and asyncio, which imports it) stay importable, but the C function that forks is replaced
    # before the hook goes in; importing that module again (which would restore it), ctypes and friends is refused
    import _posixsubprocess
    def _no_fork_exec(*args, **kwargs):
        raise PermissionError("sandbox: starting processes is not allowed")
    _posixsubprocess.fork_exec = _no_fork_exec
    _modules = ("_posixsubprocess", "_ctypes", "ctypes", "_xxsubinterpreters", "_testcapi", "_testinternalcapi")
    for _name in _modules[1:]:
        sys.modules.pop(_name, None)
    _work = os.path.realpath(os.getcwd())
    _roots = [os.path.realpath(r) for r in cfg["read_roots"]] + [_work, f"/proc/{os.getpid()}"]
    _devices = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")
    _write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    # which arguments of these events are paths that get modified
    _path_events = {"os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.chmod": (0,), "os.chown": (0,),
                    "os.truncate": (0,), "os.symlink": (1,), "os.link": (1,), "os.mkdir": (0,), "os.utime": (0,),
                    "shutil.rmtree": (0,)}
    def _under(real, roots):
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
    def _real(path):
        return os.path.realpath(os.fsdecode(path))
    def _inside(path):
        if isinstance(path, int):
            return True  # an already open descriptor
        real = _real(path)
        return _under(real, [_work]) or real in _devices
    def _readable(path):
        if isinstance(path, int) or path is None:
            return True
        real = _real(path)
        return _under(real, _roots) or real in _devices
    def _hook(event, args):
        if event in _blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in _modules:
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            flags = args[2] or 0
            writing = (flags & _write_flags) or (isinstance(args[1], str) and any(c in args[1] for c in "wax+"))
            if writing and not _inside(args[0]):
                raise PermissionError(f"sandbox: writing {args[0]!r} outside the working directory is not allowed")
            if not _readable(args[0]):
                raise PermissionError(f"sandbox: reading {args[0]!r} outside the working directory is not allowed")
        if event in ("os.listdir", "os.scandir") and not _readable(args[0] if args[0] is not None else "."):
            raise PermissionError(f"sandbox: listing {args[0]!r} outside the working directory is not allowed")
        if event in _path_events and not all(_inside(args[i]) for i in _path_events[event]):
            raise PermissionError(f"sandbox: {event} outside the working directory is not allowed")
    sys.addaudithook(_hook)
sys.argv = ["solution.py"]
runpy.run_path("solution.py", run_name="__main__")
"""


# ----------------------------------------------------------------------------------------------- choosing the level


def _python_roots(python: str) -> list[str]:
    """The directories the interpreter needs (prefixes, the executable's real location), outermost only."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.dirname(os.path.realpath(python)))}
    roots = []
    for path in sorted({os.path.realpath(p) for p in candidates} | candidates, key=len):
        if os.path.isdir(path) and not any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(path)
    return roots


_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")


@functools.lru_cache(maxsize=None)
def _bwrap_supports(bwrap: str, option: str) -> bool:
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return option in out.stdout + out.stderr


def _bwrap_command(iso: Isolation, roots: list[str], code_fd: int, work_mb: int, env: dict[str, str],
                   interpreter: list[str]) -> list[str]:
    """bwrap's command line.

    Run by a user, bwrap makes a user namespace (the program's processes are counted per namespace). Run by root
    (``iso.own_uid``), it runs without one, so that the kernel counts the program's processes, which it never
    does for root: the wrapper drops to the program's own uid (the only capabilities kept for that) before the
    program starts.
    """
    args = [iso.tool, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
            "--new-session", "--clearenv"]
    if iso.own_uid:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_CHOWN"]
    else:
        args.append("--unshare-user")
        if _bwrap_supports(iso.tool, "--disable-userns"):
            args.append("--disable-userns")
    if iso.network:
        args.append("--unshare-net")
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        args += ["--ro-bind-try", path, path]
    made = {"/", *_SYSTEM_DIRS}
    for root in roots:
        if any(root == d or root.startswith(d + "/") for d in _SYSTEM_DIRS):
            continue
        parts = root.strip("/").split("/")
        for i in range(1, len(parts)):  # parents readable by the program's uid (bwrap would make them 0700)
            parent = "/" + "/".join(parts[:i])
            if parent not in made:
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--ro-bind", root, root]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(work_mb << 20), "--tmpfs", SANDBOX_DIR,
             "--perms", "0644", "--file", str(code_fd), f"{SANDBOX_DIR}/solution.py", "--chdir", SANDBOX_DIR]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--", *interpreter]


def _unshare_command(iso: Isolation, uid: int | None, interpreter: list[str]) -> list[str]:
    args = [iso.tool, "--pid", "--fork", "--kill-child", "--mount-proc"]
    if iso.user_ns:
        args += ["--user", "--map-root-user"]
    if iso.network:
        args.append("--net")
    if uid is not None and not iso.user_ns:  # root without a user namespace: unshare drops to the uid itself
        args += ["--setgid", str(uid), "--setuid", str(uid)]
    return [*args, "--", *interpreter]


def _candidates(level: str, network: bool, python: str) -> list[Isolation]:
    """Ways to run a program, strongest first (only those of ``level`` unless it is ``auto``)."""
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    out: list[Isolation] = []
    roots = tuple(_python_roots(python))
    system = tuple(p for p in _SYSTEM_DIRS if os.path.isdir(p))
    reads = (*system, *roots)
    bwrap, unshare = shutil.which("bwrap"), shutil.which("unshare")
    linux = sys.platform.startswith("linux")
    if level in ("auto", "bwrap") and bwrap and linux:
        for own_uid in ((True, False) if is_root else (False,)):
            # as root without a uid of its own the kernel does not count processes (RLIMIT_NPROC)
            out.append(Isolation("bwrap", bwrap, own_uid, network, not own_uid, True, nproc=own_uid or not is_root,
                                 read_roots=reads))
    if level in ("auto", "unshare") and unshare and linux:
        if is_root:
            out.append(Isolation("unshare", unshare, True, network, True, nproc=True, read_roots=reads))
            out.append(Isolation("unshare", unshare, True, network, False, nproc=True, read_roots=reads))
            out.append(Isolation("unshare", unshare, False, network, False, nproc=False, read_roots=reads))
        else:
            out.append(Isolation("unshare", unshare, False, network, True, nproc=True, read_roots=reads))
    if level in ("auto", "none"):
        if is_root:
            out.append(Isolation("none", "", True, nproc=True, read_roots=reads))
        out.append(Isolation("none", "", False, nproc=False, read_roots=reads))
    return out


def _sandbox_uid() -> int:
    return _UID_BASE + random.randrange(_UID_SPAN)


@functools.lru_cache(maxsize=None)
def isolation_in_force(level: str = "auto", network: bool = True, python: str | None = None) -> Isolation:
    """The strongest way to run programs that works here (a tiny program is run in each candidate), logged once.

    Raises:
        RuntimeError: ``level`` asks for an isolation this machine cannot provide.
    """
    python = python or sys.executable
    for candidate in _candidates(level, network, python):
        ok, why = _probe(candidate, python)
        if ok:
            logger.log(logging.INFO if candidate.level == "bwrap" else logging.WARNING, "code sandbox: %s",
                       describe_isolation(candidate))
            return candidate
        logger.debug("code sandbox: %s does not work here: %s", describe_isolation(candidate), why)
    raise RuntimeError(f"sandbox isolation={level!r} is not available on this machine"
                       + ("; install bubblewrap (apt-get install bubblewrap)" if level == "bwrap" else ""))


def describe_isolation(iso: Isolation) -> str:
    """One line saying what the isolation in force stops (what the log says)."""
    if iso.level == "bwrap":
        what = ("bubblewrap: own user, mount, PID, IPC" + (", network" if iso.network else "") + " namespaces; "
                "only the working directory is writable, the trainer's files are not there")
    elif iso.level == "unshare":
        what = ("unshare: own PID" + (" and network" if iso.network else "") + " namespaces; the file system is NOT "
                "isolated (the audit hook refuses reads and writes outside the working directory); install "
                "bubblewrap (apt-get install bubblewrap) for full isolation")
    else:
        what = ("no namespaces (bubblewrap and unshare unavailable): resource limits and the audit hook only, which "
                "do not stop native code; install bubblewrap (apt-get install bubblewrap) for isolation")
    extras = []
    if iso.own_uid:
        extras.append("programs run under a uid of their own")
    extras.append("process limit per sandbox" if iso.nproc else "no per-sandbox process limit")
    return f"{what} ({', '.join(extras)})"


def _probe(iso: Isolation, python: str) -> tuple[bool, str]:
    limits = SandboxLimits(timeout_s=20, isolate_network=iso.network, python_guard=False)
    try:
        result = _run(iso, "print('sandbox-ok')", "", limits, python)
    except (OSError, subprocess.SubprocessError, ValueError, PermissionError) as exc:
        return False, repr(exc)
    return result.stdout.strip() == "sandbox-ok", (result.stderr.strip()[-300:] or f"exit {result.returncode}")


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


# ----------------------------------------------------------------------------------------------- running


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
        limits: :class:`SandboxLimits` (defaults: 5 s wall, 512 MiB, 16 processes, the strongest isolation
            available, audit hook on).
        python: interpreter to run (default: this one, so the same packages are importable).

    Returns:
        :class:`SandboxResult` with the captured stdout/stderr (each capped at ``limits.output_mb``) and the
        isolation in force.
    """
    limits = limits or SandboxLimits()
    python = python or sys.executable
    iso = isolation_in_force(limits.isolation, limits.isolate_network, python)
    return _run(iso, code, stdin, limits, python)


def _run(iso: Isolation, code: str, stdin: str, limits: SandboxLimits, python: str) -> SandboxResult:
    cpu = int(limits.cpu_time_s if limits.cpu_time_s is not None else -(-limits.timeout_s // 1) + 1)
    bwrap = iso.level == "bwrap"
    cfg = {
        "cpu": max(1, cpu),
        "mem": limits.memory_mb << 20,
        "fsize": limits.output_mb << 20,
        "nproc": limits.max_processes if iso.nproc else 0,
        "guard": limits.python_guard,
        "read_roots": list(iso.read_roots),
        "uid": None,
        "reaper": iso.level == "unshare",  # util-linux 2.38's unshare loses the child's signal; report it ourselves
    }
    uid = _sandbox_uid() if iso.own_uid else None
    if bwrap and uid is not None:
        cfg["uid"] = uid  # bwrap runs as root: the wrapper drops to the program's uid
    root = tempfile.mkdtemp(prefix="verl_sandbox_")
    opened: list[int] = []
    try:
        work = os.path.join(root, "work")
        os.mkdir(work)
        source = os.path.join(root if bwrap else work, "solution.py")
        with open(source, "w", encoding="utf-8") as f:
            f.write(code)
        if uid is not None and not bwrap:
            os.chown(work, uid, uid)
            os.chown(source, uid, uid)
        out_path, err_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
        home = SANDBOX_DIR if bwrap else work
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
        interpreter = [python, "-I", "-B", "-c", _WRAPPER, json.dumps(cfg)]
        pass_fds: tuple[int, ...] = ()
        popen_user = {}
        if bwrap:
            code_fd = os.open(source, os.O_RDONLY)
            opened.append(code_fd)
            cmd = _bwrap_command(iso, _python_roots(python), code_fd, limits.work_mb, env, interpreter)
            pass_fds = tuple(opened)
        elif iso.level == "unshare":
            cmd = _unshare_command(iso, uid, interpreter)
        else:
            cmd = interpreter
        if uid is not None and (iso.user_ns or iso.level == "none") and not bwrap:
            popen_user = {"user": uid, "group": uid, "extra_groups": []}
        start = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, cwd="/" if bwrap else work, env=env, stdin=subprocess.PIPE, stdout=out,
                                    stderr=err, start_new_session=True, pass_fds=pass_fds, **popen_user)
            for fd in opened:
                os.close(fd)
            opened.clear()
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
        returncode = proc.returncode
        if iso.pid and returncode is not None and returncode > 128:  # a child killed by signal N is reported as 128+N
            returncode = -(returncode - 128)
        cap = limits.output_mb << 20
        output_full = max(os.path.getsize(out_path), os.path.getsize(err_path)) >= cap
        stdout, stderr = _read_capped(out_path, cap), _read_capped(err_path, cap)
        return SandboxResult(
            status=_status(returncode, timed_out, stderr, output_full),
            returncode=returncode,
            stdout=stdout,
            stderr=stderr,
            wall_s=wall,
            network_isolation="netns" if iso.network else ("audit-hook" if limits.python_guard else "none"),
            isolation=iso.level,
        )
    finally:
        for fd in opened:
            os.close(fd)
        shutil.rmtree(root, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's session (it and anything it started; with a PID namespace, all of it) and reap it."""
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
