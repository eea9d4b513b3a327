"""Rule-based scorers and ``default_compute_score``, which picks one by the sample's ``data_source``.

A scorer has verl's signature ``fn(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`` and
returns a float, or a dict with a ``"score"`` key plus extra fields that the reward manager logs.

Add a data source either with :func:`register_scorer` (in the process that scores) or, for training runs,
with ``custom_reward_function.path=/path/to/file.py custom_reward_function.name=my_fn``.

Scores equal verl's for every data source both know (see ``docs/preparation/reward_function.md``); our more
lenient matching is an explicit option, :mod:`verl.utils.reward_score.lenient`. Standard library only (the code
scorer starts subprocesses; nothing heavy is imported).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from verl.utils.reward_score import code_exec, gsm8k, math_dapo, math_reward, search_r1_like_qa_em

__all__ = ["UnknownDataSourceError", "default_compute_score", "register_scorer", "registered_data_sources"]

ScoreFn = Callable[..., Any]


class UnknownDataSourceError(NotImplementedError):
    """No scorer is registered for a sample's ``data_source`` (a configuration error, never scored as 0)."""


def _gsm8k(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return gsm8k.compute_score(solution_str, ground_truth)


def _math(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return math_reward.compute_score(solution_str, ground_truth)


def _math_dapo(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return math_dapo.compute_score(solution_str, ground_truth)


def _search_r1(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return search_r1_like_qa_em.compute_score(solution_str, ground_truth)


def _code(data_source, solution_str, ground_truth, extra_info=None, memory_limit_mb=None, **kwargs):
    options = {"memory_mb": memory_limit_mb} if memory_limit_mb else {}
    if "timeout_s" in kwargs:
        options["timeout_s"] = kwargs["timeout_s"]
    return code_exec.compute_score(solution_str, ground_truth, extra_info, **options)


_SEARCH_R1 = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")

# verl's table (verl.utils.reward_score.default_compute_score), plus "gsm8k" and "code" as our own aliases
_EXACT: dict[str, ScoreFn] = {
    "openai/gsm8k": _gsm8k,
    "gsm8k": _gsm8k,
    "lighteval/MATH": _math,
    "DigitalLearningGmbH/MATH-lighteval": _math,
    "HuggingFaceH4/MATH-500": _math,
    "math": _math_dapo,  # verl scores "math" with the DAPO scorer, not the MATH one
    "math_dapo": _math_dapo,
    "math_dapo_reasoning": _math_dapo,
    "codecontests": _code,
    "apps": _code,
    "codeforces": _code,
    "taco": _code,
    "code": _code,
    **{f"searchR1_{name}": _search_r1 for name in _SEARCH_R1},
}
_PREFIX: dict[str, ScoreFn] = {"aime": _math_dapo}

# sources verl's default_compute_score knows whose graders need libraries we do not depend on
_NUMINA = ("aops_forum", "synthetic_math", "amc_aime", "synthetic_amc", "cn_k12", "olympiads")
_NOT_IMPLEMENTED = {
    **{f"numina_{name}": ("prime_math (a sympy + pylatexenc grader)", "pylatexenc") for name in _NUMINA},
    "hiyouga/geometry3k": ("geo3k (mathruler's grader)", "mathruler"),
}


def register_scorer(
    data_source: str, fn: ScoreFn | None = None, *, prefix: bool = False, override: bool = False
) -> Any:
    """Register ``fn`` for ``data_source`` (or every source starting with it when ``prefix``).

    Usable as a decorator (``@register_scorer("my_source")``). ``fn`` takes verl's arguments
    ``(data_source, solution_str, ground_truth, extra_info=None, **kwargs)``. Registering a taken name raises
    unless ``override``. Registration is per process: Ray workers started with ``spawn`` do not see it, so
    for training prefer ``custom_reward_function.path``.
    """

    def _register(f: ScoreFn) -> ScoreFn:
        table = _PREFIX if prefix else _EXACT
        if data_source in table and not override:
            raise ValueError(f"a scorer for data_source {data_source!r} is already registered; pass override=True")
        table[data_source] = f
        return f

    return _register if fn is None else _register(fn)


def registered_data_sources() -> list[str]:
    """Exact data-source names, then prefixes (suffixed ``*``), that :func:`default_compute_score` handles."""
    return sorted(_EXACT) + [p + "*" for p in sorted(_PREFIX)]


def _lookup(data_source: str) -> ScoreFn:
    fn = _EXACT.get(data_source)
    if fn is None:
        fn = next((f for p, f in _PREFIX.items() if data_source.startswith(p)), None)
    if fn is None and data_source in _NOT_IMPLEMENTED:
        grader, package = _NOT_IMPLEMENTED[data_source]
        raise UnknownDataSourceError(
            f"data_source={data_source!r} is scored in verl by {grader}, which needs the package {package!r} that "
            "this library does not depend on, so it is not implemented here; score it with "
            "custom_reward_function.path=/path/to/file.py (a function that imports the package itself)"
        )
    if fn is None:
        raise UnknownDataSourceError(
            f"no reward function for data_source={data_source!r}. Known: {registered_data_sources()}. "
            "Write fn(data_source, solution_str, ground_truth, extra_info=None, **kwargs) and either set "
            "custom_reward_function.path=/path/to/file.py custom_reward_function.name=fn, or call "
            f"verl.utils.reward_score.register_scorer({data_source!r}, fn)."
        )
    return fn


def default_compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> float | dict[str, Any]:
    """Score one response with the scorer registered for its ``data_source``.

    Args:
        data_source: the dataset's name, e.g. ``"openai/gsm8k"`` (see :func:`registered_data_sources`).
        solution_str: the decoded response.
        ground_truth: ``reward_model["ground_truth"]`` of the sample.
        extra_info: the sample's ``extra_info`` dict.
        kwargs: scorer options (e.g. ``memory_limit_mb`` / ``timeout_s`` for code).

    Returns:
        a float, or a dict with ``"score"`` and extra fields to log.

    Raises:
        UnknownDataSourceError: no scorer is registered for ``data_source``; the message says how to add one.
    """
    result = _lookup(str(data_source))(data_source, solution_str, ground_truth, extra_info, **kwargs)
    if isinstance(result, dict):
        return result
    if isinstance(result, (bool, int, float)):
        return float(result)
    return float(result[0])  # a (score, ...) tuple, as verl's scorers may return
