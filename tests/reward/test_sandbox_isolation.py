"""Model-style attacks on the code sandbox: every attempt fails and the trainer survives.

Each attack runs with the isolation in force on this machine (logged by the sandbox; bubblewrap where installed,
else unshare, else none) and the audit hook, as in training. The OS layer alone (audit hook off) is attacked
too where it is in force: the file-system attacks need bubblewrap, the process attacks a PID namespace, the fork
bomb a per-sandbox process limit; the others are skipped with the reason.
"""

import logging
import os
import shutil
import sys
from pathlib import Path

import pytest

from verl.utils.reward_score.sandbox import (
    SandboxLimits,
    describe_isolation,
    isolation_in_force,
    run_python,
)

SECRET = "hunter2-do-not-leak"
LIMITS = SandboxLimits(timeout_s=10)
NO_GUARD = SandboxLimits(timeout_s=10, python_guard=False)


@pytest.fixture(scope="module")
def iso():
    return isolation_in_force()


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return str(path)


def attack(code, limits=LIMITS):
    res = run_python(code, limits=limits)
    assert "ESCAPED" not in res.stdout and SECRET not in res.stdout + res.stderr, res.stdout + res.stderr
    return res


def guard_modes(iso, needs):
    """[(name, limits)]: the full sandbox, plus the OS layer alone when ``needs(iso)`` says it is in force."""
    modes = [("os+hook", LIMITS)]
    if needs(iso):
        modes.append(("os only", NO_GUARD))
    return modes


def test_the_isolation_in_force_is_logged(caplog):
    isolation_in_force.cache_clear()
    with caplog.at_level(logging.INFO, logger="verl.utils.reward_score.sandbox"):
        iso = isolation_in_force()
    assert "code sandbox: " + describe_isolation(iso) in caplog.text
    if shutil.which("bwrap"):
        assert iso.level == "bwrap", "bubblewrap is installed, so it must be in force"


READS = [  # each prints what it read: the secret must not show up
    "print(open({p!r}).read())",
    "import pathlib; print(pathlib.Path({p!r}).read_text())",
    "import os; fd = os.open({p!r}, os.O_RDONLY); print(os.read(fd, 100))",
    "import io; print(io.FileIO({p!r}).read())",
    "import shutil; shutil.copy({p!r}, 'copy.txt'); print(open('copy.txt').read())",
    "import linecache; print(linecache.getline({p!r}, 1))",
    "import os; print('ESCAPED' if 'secret.txt' in os.listdir(os.path.dirname({p!r})) else 'hidden')",
]


@pytest.mark.parametrize("code", READS)
def test_planted_secret_cannot_be_read(iso, secret, code):
    for _, limits in guard_modes(iso, lambda i: i.filesystem):
        attack(code.format(p=secret), limits)


def test_trainer_files_are_not_visible(iso, tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    (tmp_path / "checkpoint.pt").write_text(SECRET)
    files = [os.path.join(repo, "pyproject.toml"), os.path.join(repo, "verl", "__init__.py"), __file__,
             str(tmp_path / "checkpoint.pt")]
    code = ("import os\nfor p in {files!r}:\n    try:\n        open(p).read(1)\n        print('ESCAPED', p)\n"
            "    except OSError:\n        pass\nfor d in {dirs!r}:\n    try:\n        print('ESCAPED', d, os.listdir(d))\n"
            "    except OSError:\n        pass\n")
    dirs = [os.path.join(repo, "verl"), os.path.join(repo, "tests"), str(tmp_path)]
    for _, limits in guard_modes(iso, lambda i: i.filesystem):
        attack(code.format(files=files, dirs=dirs), limits)


def test_writes_outside_the_working_directory_fail(iso, tmp_path):
    target = tmp_path / "planted_by_model.txt"
    for _, limits in guard_modes(iso, lambda i: i.filesystem):
        res = attack(f"open({str(target)!r}, 'w').write('x')\nprint('ESCAPED')", limits)
        assert res.status == "runtime_error"
        assert not target.exists()
        res = attack("open('/usr/evil', 'w').write('x')\nprint('ESCAPED')", limits)
        assert not os.path.exists("/usr/evil")
    inside = run_python("open('mine.txt', 'w').write('ok')\nprint(open('mine.txt').read())", limits=LIMITS)
    assert inside.status == "ok" and inside.stdout.strip() == "ok"


def test_other_processes_can_be_neither_listed_nor_signalled(iso):
    me = os.getpid()
    code = (f"import os, signal\ntry:\n    print('ESCAPED', open('/proc/{me}/cmdline').read())\nexcept OSError:\n    pass\n"
            f"try:\n    os.kill({me}, signal.SIGTERM)\n    print('ESCAPED kill')\nexcept OSError:\n    pass\n"
            f"try:\n    print('ESCAPED' if '{me}' in os.listdir('/proc') else 'hidden')\nexcept OSError:\n    pass\n")
    for _, limits in guard_modes(iso, lambda i: i.pid):
        attack(code, limits)
    assert os.getpid() == me  # still here


def test_fork_bomb_is_contained(iso):
    bomb = "import os\nwhile True:\n    os.fork()\n"
    for name, limits in guard_modes(iso, lambda i: i.nproc):
        res = attack(bomb, limits)
        assert res.status in ("runtime_error", "timeout"), name
    after = run_python("print('still fine')", limits=LIMITS)  # the trainer (and this machine) survive
    assert after.status == "ok"


def test_no_socket_reaches_anything(iso, local_server):
    code = ("import socket\nfor addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
            "    try:\n        socket.create_connection(addr, timeout=1)\n        print('ESCAPED', addr)\n"
            "    except OSError:\n        pass\n")
    for _, limits in guard_modes(iso, lambda i: i.network):
        attack(code.format(port=local_server), limits)


def test_ctypes_and_posixsubprocess_escapes_fail(iso, secret):
    via_ctypes = (f"import ctypes\nlibc = ctypes.CDLL(None)\nfd = libc.open({secret.encode()!r}, 0)\n"
                  "buf = ctypes.create_string_buffer(100)\nn = libc.read(fd, buf, 100)\n"
                  "print(buf.value)\n")
    via_fork_exec = ("import _posixsubprocess, os\nr, w = os.pipe()\n"
                     f"_posixsubprocess.fork_exec([b'/bin/cat', {secret.encode()!r}], [b'/bin/cat'], True, (w,), None,"
                     " None, -1, -1, -1, w, -1, -1, r, w, True, False, None, None, None, -1, None, False)\n"
                     "os.close(w)\nprint(os.read(r, 100))\n")
    subprocess_run = f"import subprocess\nprint(subprocess.run(['cat', {secret!r}], capture_output=True).stdout)"
    for code in (via_ctypes, via_fork_exec, subprocess_run):  # what they print must not be the secret
        for _, limits in guard_modes(iso, lambda i: i.filesystem):
            attack(code, limits)


def test_bubblewrap_only_the_work_directory_is_writable():
    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap (bwrap) is not installed here; the fallback isolation is tested above")
    limits = SandboxLimits(timeout_s=10, isolation="bwrap", python_guard=False, work_mb=4)
    res = run_python("import os\nprint(os.getcwd(), sorted(os.listdir('/')))\n"
                     "for p in ['/usr/x', '/tmp/x', '/x']:\n"
                     "    try:\n        open(p, 'w')\n        print('ESCAPED', p)\n    except OSError:\n        pass\n",
                     limits=limits)
    assert res.status == "ok" and res.isolation == "bwrap" and "ESCAPED" not in res.stdout, res.stderr
    cwd, listing = res.stdout.split(" ", 1)
    assert cwd == "/sandbox"
    # a fresh root: system directories, the Python installation's (and import path's) top directories, the work
    # directory, nothing else
    python_tops = {Path(p).resolve().parts[1] for p in (sys.prefix, sys.base_prefix, sys.executable, *sys.path) if p}
    for name in ("tmp", "home"):
        assert name in python_tops or f"'{name}'" not in listing, listing
    assert "'sandbox'" in listing, listing
    big = run_python("open('big', 'wb').write(b'x' * (6 << 20))", limits=limits)  # over the 4 MiB work directory
    assert big.status != "ok"


def test_requiring_an_unavailable_isolation_fails_clearly():
    if shutil.which("bwrap"):
        pytest.skip("bubblewrap is installed here")
    with pytest.raises(RuntimeError, match="install bubblewrap"):
        run_python("print(1)", limits=SandboxLimits(isolation="bwrap"))
