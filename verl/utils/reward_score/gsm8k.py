"""GSM8K scorer: the final answer follows ``#### `` (strict) or is the last number (flexible).

GSM8K (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems") reference solutions end with
``#### <answer>``; the preprocessor asks the model to do the same.

:func:`compute_score` gives exactly verl's scores: the extracted text is compared with the ground truth as a
*string*, so ``#### 72.0``, ``#### $72`` or ``#### 72.`` do not match ``"72"``, and flexible extraction keeps
thousands separators (``1,234`` is not ``"1234"``). :func:`compute_score_lenient` is our explicit option that
compares numbers instead (``$1,234.50`` equals ``1234.5``); select it for training with
``custom_reward_function.path=pkg://verl.utils.reward_score.lenient`` (see ``docs/preparation/reward_function.md``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["compute_score", "compute_score_lenient", "extract_solution", "extract_solution_lenient", "normalize_number"]

_TAIL_CHARS = 300  # only the tail of a response is searched: answers come last, and long texts stay cheap

# verl's extraction: "#### " (one space) then digits, dots and commas; flexible: any such run
_VERL_STRICT = re.compile(r"#### (-?[0-9.,]+)")
_VERL_FLEXIBLE = re.compile(r"(-?[0-9.,]+)")

# the lenient extraction: "$", spaces, signs and decimals around a well-formed number
_NUMBER = r"-?\$?\s*-?[0-9][0-9,]*(?:\.[0-9]+)?|-?\$?\s*-?\.[0-9]+"
_STRICT = re.compile(r"####\s*(" + _NUMBER + r")")
_FLEXIBLE = re.compile(_NUMBER)


def _check_method(method: str) -> None:
    if method not in ("strict", "flexible"):
        raise ValueError(f"method must be 'strict' or 'flexible', got {method!r}")


def extract_solution(solution_str: str, method: str = "strict") -> str | None:
    """verl's answer extraction from the last 300 characters, or ``None``.

    ``strict``: the text after the last ``#### `` (digits, ``.``, ``,``, a leading ``-``), commas removed.
    ``flexible``: the last run of those characters that is not ``""`` or ``"."``, commas kept (when every run
    is ``"."`` the result is ``"."``, which matches no ground truth).
    """
    _check_method(method)
    tail = solution_str[-_TAIL_CHARS:]
    if method == "strict":
        found = _VERL_STRICT.findall(tail)
        return found[-1].replace(",", "").replace("$", "") if found else None
    found = _VERL_FLEXIBLE.findall(tail)
    if not found:
        return None
    return next((s for s in reversed(found) if s not in ("", ".")), found[0])


def compute_score(
    solution_str: str,
    ground_truth: Any,
    method: str = "strict",
    format_score: float = 0.0,
    score: float = 1.0,
) -> float:
    """verl's GSM8K score: ``score`` when the extracted answer equals ``ground_truth`` (string equality),
    ``format_score`` when an answer was extracted but differs, 0 when none was found."""
    answer = extract_solution(solution_str, method=method)
    if answer is None:
        return 0
    return score if answer == ground_truth else format_score


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
    return format(value.normalize(), "f")


def extract_solution_lenient(solution_str: str, method: str = "strict") -> str | None:
    """The lenient extraction: the last ``####`` number (strict; any spacing, ``$``) or the last number
    (flexible) in the tail, normalised with :func:`normalize_number`, or ``None``."""
    _check_method(method)
    tail = solution_str[-_TAIL_CHARS:]
    matches = (_STRICT if method == "strict" else _FLEXIBLE).findall(tail)
    for candidate in reversed(matches):
        value = normalize_number(candidate)
        if value is not None:
            return value
    return None


def compute_score_lenient(
    solution_str: str,
    ground_truth: Any,
    method: str = "strict",
    format_score: float = 0.0,
    score: float = 1.0,
) -> float:
    """Like :func:`compute_score`, but answer and ground truth are compared as numbers (``72.0`` == ``72``,
    ``$1,234`` == ``1234``). A ground truth that is not a number raises ``ValueError``."""
    answer = extract_solution_lenient(solution_str, method=method)
    if answer is None:
        return 0.0
    truth = normalize_number(str(ground_truth))
    if truth is None:
        raise ValueError(f"gsm8k ground truth {ground_truth!r} is not a number")
    return score if answer == truth else format_score
