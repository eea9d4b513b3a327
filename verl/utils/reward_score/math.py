"""Lenient MATH scorer (our option; verl's exact one is :mod:`verl.utils.reward_score.math_reward`): the last
``\\boxed{...}`` of the response, normalised, compared with the ground truth.

MATH (Hendrycks et al. 2021, "Measuring Mathematical Problem Solving With the MATH Dataset") solutions put
the final answer in ``\\boxed{}``. Answers are compared after normalising LaTeX surface differences
(``\\dfrac``/``\\tfrac``, ``\\left``/``\\right``, spacing, ``$``, units, degrees, percent, ``x = ``), and failing
that by numeric value (``0.5`` equals ``\\frac{1}{2}``, ``1,000`` equals ``1000``).
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["compute_score", "extract_boxed_answer", "is_equiv", "last_boxed_only_string", "remove_boxed", "strip_string"]

_BOX_COMMANDS = ("\\boxed", "\\fbox")

_UNIT_WORDS = (
    "square units", "sq units", "units", "unit", "cm", "mm", "km", "meters", "meter", "inches", "inch",
    "feet", "foot", "ft", "miles", "mph", "degrees", "degree", "dollars", "dollar", "cents", "cent",
    "hours", "hour", "minutes", "minute", "seconds", "second", "days", "day",
)  # fmt: skip
_UNITS = "|".join(_UNIT_WORDS)
# a unit after a number: "10\text{ cm}", "10 \mbox{inches}^2", "5 dollars" (a bare word needs a space before it)
_UNIT_SUFFIX = re.compile(
    r"^(.*?[0-9}])(?:\s*\\(?:text|mbox)\{\s*(?:" + _UNITS + r")\s*\}|\s+(?:" + _UNITS + r"))(?:\^\{?[23]\}?)?$"
)


def last_boxed_only_string(text: str) -> str | None:
    """The last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed x``) in ``text``, braces matched, or ``None``."""
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
    after = start + len(cmd)
    if text.startswith(" ", after):  # "\boxed 5": the argument runs to the next "$" or whitespace
        match = re.match(r"\s+([^\s$]+)", text[after:])
        return text[start : after + match.end()] if match else None
    if not text.startswith("{", after):
        return None
    depth = 0
    i = after
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # skip escaped characters such as \{ and \}
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    return None  # unbalanced braces: no answer


def remove_boxed(boxed: str) -> str:
    """The argument of a ``\\boxed{...}`` / ``\\boxed x`` string returned by :func:`last_boxed_only_string`."""
    for cmd in _BOX_COMMANDS:
        if boxed.startswith(cmd + "{") and boxed.endswith("}"):
            return boxed[len(cmd) + 1 : -1]
        if boxed.startswith(cmd + " "):
            return boxed[len(cmd) + 1 :].strip()
    raise ValueError(f"not a boxed expression: {boxed!r}")


def extract_boxed_answer(text: str) -> str | None:
    """The content of the last ``\\boxed{}`` in ``text``, or ``None``."""
    boxed = last_boxed_only_string(text)
    return None if boxed is None else remove_boxed(boxed)


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}``, ``\\frac{1}2`` -> ``\\frac{1}{2}``."""
    s = re.sub(r"\\frac([0-9a-zA-Z])([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac([0-9a-zA-Z])\{", r"\\frac{\1}{", s)
    return re.sub(r"\\frac(\{[^{}]*\})([0-9a-zA-Z])", r"\\frac\1{\2}", s)


def _fix_sqrt(s: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}``."""
    return re.sub(r"\\sqrt([0-9a-zA-Z])", r"\\sqrt{\1}", s)


def strip_string(answer: str) -> str:
    """Normalise a LaTeX answer so that surface variants of the same answer compare equal as strings."""
    s = answer.strip().replace("\n", "")
    s = re.sub(r"\\[!,;: ]|\\quad|\\qquad", "", s)  # LaTeX spacing commands
    s = s.replace("\\\\", "\\").replace("\\displaystyle", "")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°", "", s)  # degrees
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = s.rstrip(".").strip()
    whole_text = re.fullmatch(r"\\(?:text|textbf|mathrm|mbox)\{(.*)\}", s)
    if whole_text:
        s = whole_text.group(1).strip()
    units = _UNIT_SUFFIX.match(s)
    if units:
        s = units.group(1)
    s = re.sub(r"\\(?:text|mbox|mathrm)\{\s*\}", "", s)
    if re.fullmatch(r"[a-zA-Z]\w?\s*=\s*[^=]+", s):  # "x = 5" -> "5"
        s = s.split("=", 1)[1]
    s = s.replace(" ", "")
    s = re.sub(r"(^|[^0-9])\.([0-9])", r"\g<1>0.\2", s)  # ".5" -> "0.5"
    s = _fix_sqrt(_fix_fracs(s))
    if re.fullmatch(r"-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?", s):  # thousands separators
        s = s.replace(",", "")
    simple_ratio = re.fullmatch(r"(-?[0-9]+)/([0-9]+)", s)
    if simple_ratio:
        s = f"\\frac{{{simple_ratio.group(1)}}}{{{simple_ratio.group(2)}}}"
    return s


def _numeric_value(s: str) -> Fraction | None:
    """Exact value of a normalised answer that is a plain number or a simple fraction, else ``None``."""
    sign = -1 if s.startswith("-") else 1
    body = s[1:] if sign < 0 else s
    frac = re.fullmatch(r"\\frac\{(-?[0-9.]+)\}\{(-?[0-9.]+)\}", body)
    try:
        if frac:
            den = Fraction(frac.group(2))
            return None if den == 0 else sign * Fraction(frac.group(1)) / den
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?|\.[0-9]+", body):
            return sign * Fraction(body)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def is_equiv(prediction: str | None, ground_truth: str | None) -> bool:
    """Whether two answers are the same after :func:`strip_string`, or have the same exact numeric value."""
    if prediction is None or ground_truth is None:
        return prediction is None and ground_truth is None
    a, b = strip_string(prediction), strip_string(ground_truth)
    if a == b:
        return True
    va, vb = _numeric_value(a), _numeric_value(b)
    return va is not None and va == vb


def compute_score(solution_str: str, ground_truth: str) -> float:
    """1.0 when the last ``\\boxed{}`` of ``solution_str`` matches ``ground_truth``, else 0.0.

    A ground truth that is itself a boxed expression is unboxed first.
    """
    prediction = extract_boxed_answer(solution_str)
    if prediction is None:
        return 0.0
    truth = str(ground_truth)
    if last_boxed_only_string(truth) is not None:
        truth = extract_boxed_answer(truth) or truth
    return 1.0 if is_equiv(prediction, truth) else 0.0
