"""The sandbox kills runaway programs within its limits and keeps them off the network; the code scorer."""

import json
import time

import pytest

from verl.utils.reward_score import code_exec, default_compute_score
from verl.utils.reward_score.sandbox import (
    SandboxLimits,
    network_namespace_prefix,
    run_python,
)

FAST = SandboxLimits(timeout_s=1.0, memory_mb=256)


def test_runs_program_with_stdin_in_a_temp_dir():
    res = run_python("import os\nprint(int(input()) * 2)\nprint(os.listdir('.'))", stdin="21\n", limits=FAST)
    assert res.status == "ok" and res.returncode == 0
    lines = res.stdout.splitlines()
    assert lines[0] == "42" and lines[1] == "['solution.py']"  # a fresh, empty working directory


def test_runtime_error_is_reported():
    res = run_python("raise ValueError('boom')", limits=FAST)
    assert res.status == "runtime_error" and "ValueError: boom" in res.stderr


def test_infinite_loop_is_killed_within_the_timeout():
    start = time.monotonic()
    res = run_python("while True:\n    pass", limits=FAST)
    elapsed = time.monotonic() - start
    assert res.status == "timeout"
    assert elapsed < FAST.timeout_s + 1.0


def test_cpu_limit_kills_even_without_wall_clock():
    # wall clock far away: the CPU-time rlimit (1 s) must end the busy loop
    res = run_python("while True:\n    pass", limits=SandboxLimits(timeout_s=20, cpu_time_s=1))
    assert res.status == "timeout" and res.wall_s < 5


def test_memory_bomb_hits_the_address_space_limit():
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))"
    start = time.monotonic()
    res = run_python(bomb, limits=SandboxLimits(timeout_s=10.0, memory_mb=256))
    assert res.status == "memory", res.stderr[-300:]  # stopped by the memory limit, not the clock ("timeout")
    assert time.monotonic() - start < 10.0


def test_output_flood_is_capped():
    res = run_python("while True:\n    print('x' * 1000)", limits=SandboxLimits(timeout_s=5, output_mb=1))
    assert res.status == "output_limit"
    assert len(res.stdout) <= 2**20


def test_socket_cannot_be_created():
    code = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nprint('created')"
    res = run_python(code, limits=FAST)
    assert res.status == "runtime_error" and "created" not in res.stdout
    assert "PermissionError" in res.stderr and "socket" in res.stderr


def test_subprocess_and_fork_are_blocked():
    for code in ("import subprocess\nsubprocess.run(['true'])", "import os\nos.fork()", "import os\nos.system('true')"):
        res = run_python(code, limits=FAST)
        assert res.status == "runtime_error" and "PermissionError" in res.stderr, code


CONNECT = "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')"


def test_network_namespace_blocks_connect_without_the_audit_hook(local_server):
    if not network_namespace_prefix():
        pytest.skip("this machine cannot create network namespaces (unshare --net unavailable)")
    # control: without isolation the program reaches the server
    no_isolation = SandboxLimits(isolate_network=False, python_guard=False)
    open_run = run_python(CONNECT.format(port=local_server), limits=no_isolation)
    assert open_run.stdout.strip() == "connected", open_run.stderr
    # the OS barrier alone (audit hook off) stops it
    res = run_python(CONNECT.format(port=local_server), limits=SandboxLimits(python_guard=False))
    assert res.network_isolation == "netns"
    assert res.status == "runtime_error" and "connected" not in res.stdout
    # no route out, or (bubblewrap brings up the namespace's own loopback) nobody listening on it
    assert any(e in res.stderr for e in ("OSError", "unreachable", "ConnectionRefusedError")), res.stderr


def test_audit_hook_blocks_connect_without_namespace(local_server):
    res = run_python(CONNECT.format(port=local_server), limits=SandboxLimits(isolate_network=False))
    assert res.network_isolation == "audit-hook"
    assert res.status == "runtime_error" and "PermissionError" in res.stderr and "connected" not in res.stdout


def test_limits_validation():
    with pytest.raises(ValueError, match="positive"):
        SandboxLimits(timeout_s=0)


# ---------------------------------------------------------------------------------------------- code scorer

ADD_TESTS = {"inputs": ["1 2\n", "10 -3\n"], "outputs": ["3\n", "7\n"]}


def fenced(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```\nDone."


def test_code_scorer_stdio():
    good = fenced("a, b = map(int, input().split())\nprint(a + b)")
    wrong = fenced("a, b = map(int, input().split())\nprint(a - b)")
    out = code_exec.compute_score(good, json.dumps(ADD_TESTS))
    assert out["score"] == 1.0 and out["status"] == "passed" and out["num_tests"] == 2
    out = code_exec.compute_score(wrong, ADD_TESTS)
    assert out["score"] == 0.0 and out["status"] == "wrong_answer"
    assert code_exec.compute_score("I don't know", ADD_TESTS)["status"] == "no_code"


def test_code_scorer_continuous_and_timeouts():
    half = fenced("a, b = map(int, input().split())\nprint(3)")  # right on the first test only
    assert code_exec.compute_score(half, ADD_TESTS, continuous=True)["score"] == 0.5
    hang = fenced("while True:\n    pass")
    out = code_exec.compute_score(hang, ADD_TESTS, timeout_s=1.0)
    assert out["score"] == 0.0 and out["status"] == "timeout"


def test_code_scorer_call_based():
    tests = {"fn_name": "add", "inputs": [[1, 2], [5, 5]], "outputs": [[3], [10]]}
    assert code_exec.compute_score(fenced("def add(a, b):\n    return a + b"), tests)["score"] == 1.0
    leet = fenced("class Solution:\n    def add(self, a, b):\n        return a + b")
    assert code_exec.compute_score(leet, tests)["score"] == 1.0
    assert code_exec.compute_score(fenced("def add(a, b):\n    return a * b"), tests)["score"] == 0.0
    out = code_exec.compute_score(fenced("def other(a, b):\n    return 0"), tests)
    assert out["status"] == "runtime_error"


def test_outputs_match_tolerances():
    assert code_exec.outputs_match("3 \n4\n\n", "3\n4")
    assert code_exec.outputs_match("0.3333333", "0.33333333")
    assert not code_exec.outputs_match("3\n5", "3\n4")
    with pytest.raises(ValueError, match="inputs"):
        code_exec.parse_tests({"inputs": ["1"], "outputs": []})
    with pytest.raises(ValueError, match="inputs"):
        code_exec.parse_tests([1, 2])


def test_default_compute_score_routes_code():
    good = fenced("a, b = map(int, input().split())\nprint(a + b)")
    assert default_compute_score("codecontests", good, json.dumps(ADD_TESTS))["score"] == 1.0


def test_files_outside_the_working_directory_are_protected(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for code in (
        f"open({str(victim)!r}, 'w').write('gone')",
        f"import os\nos.remove({str(victim)!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.symlink({str(victim)!r}, 'link')\nopen('link', 'w').write('gone')",
    ):
        res = run_python(code, limits=FAST)
        assert res.status == "runtime_error" and "PermissionError" in res.stderr, code
    assert victim.read_text() == "precious"
    # inside its own working directory the program may write, and numpy still imports
    inside = "open('out.txt', 'w').write('ok')\nimport numpy\nprint(open('out.txt').read(), numpy.int64(2) + 1)"
    res = run_python(inside, limits=FAST)
    assert res.status == "ok" and res.stdout.split() == ["ok", "3"], res.stderr
