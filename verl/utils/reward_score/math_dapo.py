"""DAPO-style math scorer: +1 for a correct final answer, -1 otherwise (Yu et al. 2025, "DAPO").

The answer is the text after the last ``Answer:`` (DAPO's prompt format), else the last ``\\boxed{}``.
Returns a dict, so ``acc`` and ``pred`` are logged next to ``score``.
"""

from __future__ import annotations

import re
from typing import Any

from verl.utils.reward_score.math import extract_boxed_answer, is_equiv

__all__ = ["compute_score", "extract_answer"]

_ANSWER = re.compile(r"Answer\s*:\s*(.+)", re.IGNORECASE)
_TAIL_CHARS = 300


def extract_answer(solution_str: str) -> str | None:
    """The final answer: the last ``Answer: ...`` line of the tail (unboxed if boxed), else the last box."""
    tail = solution_str[-_TAIL_CHARS:]
    lines = _ANSWER.findall(tail)
    if lines:
        answer = lines[-1].strip()
        return extract_boxed_answer(answer) or answer
    return extract_boxed_answer(solution_str)


def compute_score(solution_str: str, ground_truth: str, extra_info: dict | None = None, **_: Any) -> dict[str, Any]:
    """``{"score": 1.0 or -1.0, "acc": bool, "pred": str}``."""
    pred = extract_answer(solution_str)
    correct = pred is not None and is_equiv(pred, str(ground_truth))
    return {"score": 1.0 if correct else -1.0, "acc": correct, "pred": pred or ""}
