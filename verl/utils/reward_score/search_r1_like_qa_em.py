"""Exact-match scorer for Search-R1-style QA (data sources ``searchR1_nq``, ``searchR1_triviaqa``, ``searchR1_popqa``,
``searchR1_hotpotqa``, ``searchR1_2wikimultihopqa``, ``searchR1_musique``, ``searchR1_bamboogle``), as verl scores it.

The answer is the last ``<answer>...</answer>`` span (stripped). It matches a golden answer in
``ground_truth["target"]`` (a string or a list/array of strings) when both are equal after SQuAD's
normalisation (Rajpurkar et al. 2016): lower case, punctuation and the articles a/an/the removed, whitespace
collapsed. A correct answer in a response with more than 10 ``<answer>`` or ``</answer>`` tags gets a quarter
of the score (tag spamming); a wrong one gets ``format_score``; no answer gets 0.
"""

from __future__ import annotations

import re
import string
from typing import Any

__all__ = ["compute_score", "compute_score_subem", "em_check", "extract_solution", "normalize_answer", "subem_check"]

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_PUNCTUATION = frozenset(string.punctuation)
_MAX_TAGS = 10


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _golden(golden_answers: Any) -> list[str]:
    return [golden_answers] if isinstance(golden_answers, str) else list(golden_answers)


def em_check(prediction: str, golden_answers: Any) -> int:
    """1 when the normalised prediction equals a normalised golden answer, else 0."""
    pred = normalize_answer(prediction)
    return int(any(normalize_answer(g) == pred for g in _golden(golden_answers)))


def subem_check(prediction: str, golden_answers: Any) -> int:
    """1 when a normalised golden answer is a substring of the normalised prediction, else 0."""
    pred = normalize_answer(prediction)
    return int(any(normalize_answer(g) in pred for g in _golden(golden_answers)))


def extract_solution(solution_str: str) -> str | None:
    """The stripped content of the last ``<answer>...</answer>``, or ``None``."""
    matches = _ANSWER.findall(solution_str)
    return matches[-1].strip() if matches else None


def compute_score(
    solution_str: str, ground_truth: dict, method: str = "strict", format_score: float = 0.0, score: float = 1.0
) -> float:
    """Exact match against ``ground_truth["target"]`` (see the module docstring)."""
    answer = extract_solution(solution_str)
    if answer is None:
        return 0
    if not em_check(answer, ground_truth["target"]):
        return format_score
    if solution_str.count("<answer>") > _MAX_TAGS or solution_str.count("</answer>") > _MAX_TAGS:
        return score / 4
    return score


def compute_score_subem(
    solution_str: str, ground_truth: dict, method: str = "strict", format_score: float = 0.0, score: float = 1.0
) -> float:
    """Substring match against ``ground_truth["target"]`` (no tag-count penalty)."""
    answer = extract_solution(solution_str)
    if answer is None:
        return 0
    return score if subem_check(answer, ground_truth["target"]) else format_score
