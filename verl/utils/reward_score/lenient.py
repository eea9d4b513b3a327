"""Our lenient scoring, an explicit option next to verl's exact scores (:func:`default_compute_score`).

verl compares extracted answers as strings after light normalisation, so a correct answer written differently
(``#### 72.0``, ``#### $1,234``, ``\\boxed{0.5}`` for ``\\frac12``) scores as wrong. The functions here compare
numbers and LaTeX variants instead, for ``openai/gsm8k`` / ``gsm8k``, the MATH sources and the DAPO sources
(``math_dapo``, ``math``, ``math_dapo_reasoning``, ``aime*``); every other source is scored by
:func:`default_compute_score`. Use it in training with::

    custom_reward_function.path=pkg://verl.utils.reward_score.lenient custom_reward_function.name=compute_score

Scores from this option are not comparable with a verl run's.
"""

from __future__ import annotations

from typing import Any

from verl.utils.reward_score import default_compute_score, gsm8k, math, math_dapo

__all__ = ["compute_score"]

_MATH_SOURCES = ("lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500")
_DAPO_SOURCES = ("math_dapo", "math", "math_dapo_reasoning")


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **kwargs: Any
) -> float | dict[str, Any]:
    """Score one response leniently (see the module docstring); same signature as ``default_compute_score``."""
    if data_source in ("openai/gsm8k", "gsm8k"):
        return gsm8k.compute_score_lenient(solution_str, ground_truth)
    if data_source in _MATH_SOURCES:
        return math.compute_score(solution_str, ground_truth)
    if data_source in _DAPO_SOURCES or str(data_source).startswith("aime"):
        return math_dapo.compute_score_lenient(solution_str, ground_truth)
    return default_compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
