"""DAPO math scorer (data sources ``math_dapo``, ``math``, ``math_dapo_reasoning``, ``aime*``): +1 for a correct
final answer, -1 otherwise (Yu et al. 2025, "DAPO"), with verl's exact matching.

Only the last 300 characters count. The answer is the text after the last ``Answer:`` on its line
(case-insensitive); both it and the ground truth go through the Minerva normalisation of
:func:`normalize_final_answer` (Lewkowycz et al. 2022) and must then be equal strings: ``\\dfrac12``, ``0.5``
for ``\\frac{1}{2}`` or ``10\\%`` for ``10`` all score -1, as in verl. Without an ``Answer:`` line, or with
``strict_box_verify``, the last ``\\boxed{}`` of the final 100 characters must equal the ground truth verbatim
(``\\boxed{ 2 }`` is not ``2``).

:func:`compute_score_lenient` is our explicit option (``Answer:`` else the last box, compared with the lenient
MATH equivalence of :mod:`verl.utils.reward_score.math`).
"""

from __future__ import annotations

import re
from typing import Any

from verl.utils.reward_score.math import extract_boxed_answer, is_equiv
from verl.utils.reward_score.math_reward import braced_span

__all__ = [
    "compute_score",
    "compute_score_lenient",
    "extract_answer",
    "is_correct_minerva",
    "is_correct_strict_box",
    "last_boxed_only_string",
    "normalize_final_answer",
    "remove_boxed",
    "verify",
]

_TAIL_CHARS = 300  # the longest MATH-500 answer has 159 characters
_ANSWER_PATTERN = r"(?i)Answer\s*:\s*([^\n]+)"

# Minerva's normalisation (Lewkowycz et al. 2022, appendix D.1): replacements in this order, then removals
_REPLACE = (
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""), ("mbox", "text"),
    (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
)  # fmt: skip
_REMOVE = (
    "square", "ways", "integers", "dollars", "mph", "inches", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals",
    "edges", "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}",
    "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;",
    ",\\!", "{,}", '"', "\\dots",
)  # fmt: skip


def last_boxed_only_string(string: str) -> str | None:
    """The last ``\\boxed{...}`` of ``string`` with its braces, or ``None`` (no box, or braces never close)."""
    start = string.rfind("\\boxed{")
    if start < 0:
        return None
    return braced_span(string, start)


def remove_boxed(s: str) -> str:
    """``"\\boxed{x}"`` -> ``"x"`` (anything else raises ``AssertionError``)."""
    assert s.startswith("\\boxed{") and s.endswith("}"), f"box error: {s}"
    return s[len("\\boxed{") : -1]


def normalize_final_answer(final_answer: str) -> str:
    """Minerva's normalisation of a final answer: the part after the last ``=``, units and words removed,
    ``$...$``, ``\\text{}``, ``\\textbf{}``, ``\\overline{}``, ``\\boxed{}`` unwrapped, ``\\fracab`` ->
    ``\\frac{a}{b}``, ``\\sqrta`` -> ``\\sqrt{a}``, commas dropped from integers, then stripped."""
    final_answer = final_answer.split("=")[-1]
    for before, after in _REPLACE:
        final_answer = final_answer.replace(before, after)
    for expr in _REMOVE:
        final_answer = final_answer.replace(expr, "")
    final_answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", final_answer)
    for command in ("text", "textbf", "overline"):
        final_answer = re.sub(r"(\\" + command + r"\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", final_answer)
    final_answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", final_answer)
    final_answer = final_answer.replace("$", "")
    if final_answer.replace(",", "").isdigit():
        final_answer = final_answer.replace(",", "")
    return final_answer.strip()


def is_correct_minerva(
    solution_str: str, gt: str, gt_need_extract: bool = False, answer_pattern: str = _ANSWER_PATTERN
) -> tuple[bool, str]:
    """``(correct, normalised prediction)``: the last ``answer_pattern`` match (``"[INVALID]"`` when none) and
    the ground truth (unboxed first with ``gt_need_extract``) compared after :func:`normalize_final_answer`."""
    matches = re.findall(answer_pattern, solution_str)
    pred = normalize_final_answer(matches[-1] if matches else "[INVALID]")
    if gt_need_extract:
        gt = normalize_final_answer(remove_boxed(last_boxed_only_string(gt)))
    else:
        gt = normalize_final_answer(gt)
    return pred == gt, pred


def is_correct_strict_box(pred: str, gt: str, pause_tokens_index: list[int] | None = None) -> tuple[int, str | None]:
    """``(1 or -1, boxed content)``: the last ``\\boxed{}`` of the final 100 characters (after the last pause
    token when ``pause_tokens_index``, 4 indices, is given) must equal ``gt`` verbatim."""
    if pause_tokens_index is not None:
        assert len(pause_tokens_index) == 4
        pred = pred[pause_tokens_index[-1] - 100 :]
    else:
        pred = pred[-100:]
    boxed = last_boxed_only_string(pred)
    extracted = remove_boxed(boxed) if boxed is not None else None
    return (1 if extracted == gt else -1), extracted


def verify(
    solution_str: str, answer: str, strict_box_verify: bool = False, pause_tokens_index: list[int] | None = None
) -> tuple[bool, str | None]:
    """``(correct, prediction)`` by the strict-box rule, or by the Minerva rule with the strict-box rule as the
    fallback when the response has no ``Answer:`` line but has a ``\\boxed{}`` (as current verl does)."""
    if strict_box_verify:
        score, pred = is_correct_strict_box(solution_str, answer, pause_tokens_index)
        return score == 1, pred
    correct, pred = is_correct_minerva(solution_str, answer)
    if pred != "[INVALID]":
        return correct, pred
    box_score, box_pred = is_correct_strict_box(solution_str, answer, pause_tokens_index)
    if box_pred is not None:
        return box_score == 1, box_pred
    return correct, pred


def compute_score(
    solution_str: str,
    ground_truth: str,
    strict_box_verify: bool = False,
    pause_tokens_index: list[int] | None = None,
) -> dict[str, Any]:
    """verl's DAPO score: ``{"score": 1.0 or -1.0, "acc": bool, "pred": normalised prediction}``."""
    correct, pred = verify(solution_str[-_TAIL_CHARS:], ground_truth, strict_box_verify, pause_tokens_index)
    return {"score": 1.0 if correct else -1.0, "acc": correct, "pred": pred}


_LENIENT_ANSWER = re.compile(r"Answer\s*:\s*(.+)", re.IGNORECASE)


def extract_answer(solution_str: str) -> str | None:
    """The lenient extraction: the last ``Answer: ...`` line of the tail (unboxed if boxed), else the last box."""
    lines = _LENIENT_ANSWER.findall(solution_str[-_TAIL_CHARS:])
    if lines:
        answer = lines[-1].strip()
        return extract_boxed_answer(answer) or answer
    return extract_boxed_answer(solution_str)


def compute_score_lenient(solution_str: str, ground_truth: str, extra_info: dict | None = None, **_: Any) -> dict[str, Any]:
    """Our lenient option: ``{"score": 1.0 or -1.0, "acc": bool, "pred": str}`` with numeric and LaTeX-variant
    equality (``\\boxed{0.5}`` matches ``\\frac12``)."""
    pred = extract_answer(solution_str)
    correct = pred is not None and is_equiv(pred, str(ground_truth))
    return {"score": 1.0 if correct else -1.0, "acc": correct, "pred": pred or ""}
