"""GSM8K scorer: the final answer follows ``####`` (strict) or is the last number (flexible).

GSM8K (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems") reference solutions end with
``#### <answer>``; the preprocessor asks the model to do the same.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["compute_score", "extract_solution", "normalize_number"]

_TAIL_CHARS = 300  # only the tail of a response is searched: answers come last, and long texts stay cheap
_NUMBER = r"-?\$?\s*-?[0-9][0-9,]*(?:\.[0-9]+)?|-?\$?\s*-?\.[0-9]+"
_STRICT = re.compile(r"####\s*(" + _NUMBER + r")")
_FLEXIBLE = re.compile(_NUMBER)


def normalize_number(text: str) -> str | None:
    """Canonical form of a number written as text: ``"$1,234.50"`` -> ``"1234.5"``, ``"-0"`` -> ``"0"``.

    Returns ``None`` when ``text`` is not a number.
    """
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").strip().rstrip(".")
    if cleaned.startswith("--"):
        cleaned = cleaned[2:]
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def extract_solution(solution_str: str, method: str = "strict") -> str | None:
    """The answer string in ``solution_str``, normalised (see :func:`normalize_number`), or ``None``.

    Args:
        method: ``"strict"``: the last ``#### <number>`` in the tail of the text; ``"flexible"``: the last
            number anywhere in the tail.
    """
    if method not in ("strict", "flexible"):
        raise ValueError(f"method must be 'strict' or 'flexible', got {method!r}")
    tail = solution_str[-_TAIL_CHARS:]
    matches = (_STRICT if method == "strict" else _FLEXIBLE).findall(tail)
    for candidate in reversed(matches):
        value = normalize_number(candidate)
        if value is not None:
            return value
    return None


def compute_score(
    solution_str: str,
    ground_truth: str,
    method: str = "strict",
    format_score: float = 0.0,
    score: float = 1.0,
) -> float:
    """``score`` when the extracted answer equals the ground truth, ``format_score`` when an answer was found
    but is wrong, 0 when no answer was found."""
    answer = extract_solution(solution_str, method=method)
    if answer is None:
        return 0.0
    truth = normalize_number(str(ground_truth))
    if truth is None:
        raise ValueError(f"gsm8k ground truth {ground_truth!r} is not a number")
    return score if answer == truth else format_score
