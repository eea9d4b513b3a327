"""Score a model's program by running it on test cases in the sandbox (:mod:`.sandbox`: bubblewrap namespaces where
installed, so the program sees none of the trainer's files, processes or network; docs/advance/sandbox.md).

Ground truth (a dict, or its JSON string) in the APPS / CodeContests / TACO style:

- standard I/O: ``{"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...]}``: each input goes to stdin, the
  printed output must match (line by line, trailing whitespace ignored, numbers within 1e-6);
- call-based: ``{"fn_name": "add", "inputs": [[1, 2], ...], "outputs": [3, ...]}``: each input is the list of
  positional arguments of ``fn_name`` (a top-level function, or a method of a ``Solution`` class), and the
  return value must equal the output (or the output's single element, as APPS wraps them).

The program is the last fenced code block of the response (```` ```python ```` or plain ```` ``` ````).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from verl.utils.reward_score.sandbox import SandboxLimits, run_python

__all__ = ["compute_score", "extract_code", "outputs_match", "parse_tests", "run_tests"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_RESULT_MARK = "@@VERL_RESULT@@"

_CALL_HARNESS = """

def __verl_call():
    import json as _json, sys as _sys
    _args = _json.loads(_sys.stdin.read())
    _name = {name!r}
    _fn = globals().get(_name)
    if _fn is None and "Solution" in globals():
        _fn = getattr(globals()["Solution"](), _name)
    if _fn is None:
        raise NameError(f"the program defines no function {{_name!r}}")
    _out = _fn(*_args)
    print({mark!r} + _json.dumps(_out))
__verl_call()
"""


def extract_code(solution_str: str) -> str | None:
    """The last fenced code block of ``solution_str`` (any language tag), or ``None`` when there is none."""
    blocks = _FENCE.findall(solution_str)
    return blocks[-1][1] if blocks else None


def parse_tests(ground_truth: Any) -> dict[str, Any]:
    """Validate test cases given as a dict or a JSON string; return ``{"inputs", "outputs", "fn_name"}``."""
    tests = json.loads(ground_truth) if isinstance(ground_truth, (str, bytes)) else ground_truth
    if not isinstance(tests, dict) or "inputs" not in tests or "outputs" not in tests:
        raise ValueError(
            'code ground truth must be {"inputs": [...], "outputs": [...]} (optionally "fn_name"), '
            f"got {type(tests).__name__}"
        )
    inputs, outputs = list(tests["inputs"]), list(tests["outputs"])
    if len(inputs) != len(outputs):
        raise ValueError(f"code ground truth has {len(inputs)} inputs but {len(outputs)} outputs")
    return {"inputs": inputs, "outputs": outputs, "fn_name": tests.get("fn_name") or None}


def _tokens_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
    except ValueError:
        return False


def outputs_match(actual: str, expected: str) -> bool:
    """Whether printed ``actual`` matches ``expected``: same lines up to trailing whitespace and trailing
    blank lines, or failing that the same whitespace-separated tokens with numbers equal within 1e-6."""
    a_lines = [line.rstrip() for line in actual.strip("\n").splitlines()]
    e_lines = [line.rstrip() for line in expected.strip("\n").splitlines()]
    if a_lines == e_lines:
        return True
    a_tok, e_tok = actual.split(), expected.split()
    return len(a_tok) == len(e_tok) and all(_tokens_equal(x, y) for x, y in zip(a_tok, e_tok))


def _call_result_matches(stdout: str, expected: Any) -> bool:
    lines = [line for line in stdout.splitlines() if line.startswith(_RESULT_MARK)]
    if not lines:
        return False
    got = json.loads(lines[-1][len(_RESULT_MARK) :])
    expected = json.loads(json.dumps(expected))  # tuples -> lists, as the result went through JSON
    return got == expected or (isinstance(expected, list) and len(expected) == 1 and got == expected[0])


def run_tests(
    code: str, tests: dict[str, Any], limits: SandboxLimits | None = None, stop_on_failure: bool = True
) -> list[str]:
    """Run ``code`` on every test case; return one status per test run.

    Statuses: ``"passed"``, ``"wrong_answer"``, or the sandbox's failure (``"timeout"``, ``"memory"``,
    ``"runtime_error"``, ``"output_limit"``). With ``stop_on_failure`` the list ends at the first failure.
    """
    fn_name = tests["fn_name"]
    program = code + _CALL_HARNESS.format(name=fn_name, mark=_RESULT_MARK) if fn_name else code
    statuses = []
    for test_input, expected in zip(tests["inputs"], tests["outputs"]):
        if fn_name:
            args = json.loads(test_input) if isinstance(test_input, str) else test_input
            stdin = json.dumps(args if isinstance(args, list) else [args])
        else:
            stdin = test_input if isinstance(test_input, str) else "\n".join(map(str, test_input))
        result = run_python(program, stdin=stdin, limits=limits)
        if result.status != "ok":
            status = result.status
        elif fn_name:
            status = "passed" if _call_result_matches(result.stdout, expected) else "wrong_answer"
        else:
            exp = expected if isinstance(expected, str) else "\n".join(map(str, expected))
            status = "passed" if outputs_match(result.stdout, exp) else "wrong_answer"
        statuses.append(status)
        if stop_on_failure and status != "passed":
            break
    return statuses


def compute_score(
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    continuous: bool = False,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    **_: Any,
) -> dict[str, Any]:
    """Run the response's program on the test cases.

    Returns:
        ``{"score", "pass_rate", "num_tests", "status"}``: ``score`` is 1.0 when every test passes, else 0.0
        (or the pass rate when ``continuous``); ``status`` is ``"passed"``, ``"no_code"`` or the first
        failure's status.
    """
    tests = parse_tests(ground_truth)
    n = len(tests["inputs"])
    code = extract_code(solution_str)
    if code is None:
        return {"score": 0.0, "pass_rate": 0.0, "num_tests": n, "status": "no_code"}
    limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb)
    statuses = run_tests(code, tests, limits, stop_on_failure=not continuous)
    passed = sum(s == "passed" for s in statuses)
    rate = passed / n if n else 0.0
    failure = next((s for s in statuses if s != "passed"), "passed")
    score = rate if continuous else float(n > 0 and passed == n)
    return {"score": score, "pass_rate": rate, "num_tests": n, "status": failure}
