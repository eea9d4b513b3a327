"""MATH scorer with verl's exact matching (data sources ``lighteval/MATH``, ``DigitalLearningGmbH/MATH-lighteval``,
``HuggingFaceH4/MATH-500``).

The answer is the last ``\\boxed{...}`` (or ``\\boxed x``, ``\\fbox{...}``) of the response; it matches when both
strings are equal after the Hendrycks et al. (2021, "Measuring Mathematical Problem Solving With the MATH
Dataset") normalisation: ``\\dfrac``/``\\tfrac`` -> ``\\frac``, no ``\\left``/``\\right``, degrees, ``\\$``,
``\\%`` and spaces removed, ``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt3`` -> ``\\sqrt{3}``, ``a/b`` ->
``\\frac{a}{b}`` for integers, ``0.5`` -> ``\\frac{1}{2}``, a short ``k = `` prefix dropped, and units after
``\\text{ `` cut. Nothing else is equal: ``0.25`` is not ``\\frac14``. :mod:`verl.utils.reward_score.math` is
our lenient option (numeric equality, more unit and LaTeX variants).
"""

from __future__ import annotations

from typing import Any

__all__ = ["compute_score", "is_equiv", "last_boxed_only_string", "remove_boxed", "strip_string"]


def last_boxed_only_string(string: str) -> str | None:
    """The last boxed expression of ``string`` as verl finds it, or ``None``.

    When ``"\\boxed "`` (with a space) occurs anywhere, the result is ``"\\boxed "`` plus the text after its
    last occurrence up to the next ``$``; otherwise the last ``\\boxed`` (else ``\\fbox``) with its first
    brace group, or ``None`` when the braces never close.
    """
    if "\\boxed " in string:
        return "\\boxed " + string.split("\\boxed ")[-1].split("$")[0]
    start = string.rfind("\\boxed")
    if start < 0:
        start = string.rfind("\\fbox")
        if start < 0:
            return None
    return braced_span(string, start)


def braced_span(string: str, start: int) -> str | None:
    """``string[start:]`` up to the brace that closes the first ``{`` after ``start``, or ``None`` if it never does."""
    depth = 0
    for i in range(start, len(string)):
        if string[i] == "{":
            depth += 1
        elif string[i] == "}":
            depth -= 1
            if depth == 0:
                return string[start : i + 1]
    return None


def remove_boxed(s: str) -> str:
    """The argument of ``"\\boxed x"`` or ``"\\boxed{x}"``; anything else raises ``AssertionError``."""
    if "\\boxed " in s:
        assert s.startswith("\\boxed "), s
        return s[len("\\boxed ") :]
    assert s.startswith("\\boxed{") and s.endswith("}"), s
    return s[len("\\boxed{") : -1]


def _fix_fracs(string: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}``; a ``\\frac`` followed by one
    character leaves the whole string unchanged, one at the very end raises (the caller falls back)."""
    head, *rest = string.split("\\frac")
    out = [head]
    for part in rest:
        out.append("\\frac")
        if part[0] == "{":
            out.append(part)
            continue
        if len(part) < 2:
            return string
        a, b, tail = part[0], part[1], part[2:]
        out.append("{" + a + "}" + (b + tail if b == "{" else "{" + b + "}" + tail))
    return "".join(out)


def _fix_a_slash_b(string: str) -> str:
    """``"3/4"`` -> ``"\\frac{3}{4}"`` when both sides are integers written canonically."""
    parts = string.split("/")
    if len(parts) != 2:
        return string
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return string
    if string != f"{a}/{b}":
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(string: str) -> str:
    """Cut a unit written as ``\\text{ ...}``; more than one such group raises (the caller falls back)."""
    if "\\text{ " not in string:
        return string
    parts = string.split("\\text{ ")
    assert len(parts) == 2, string
    return parts[0]


def _fix_sqrt(string: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}`` (a ``\\sqrt`` at the very end raises; the caller falls back)."""
    if "\\sqrt" not in string:
        return string
    head, *rest = string.split("\\sqrt")
    return head + "".join("\\sqrt" + (p if p[0] == "{" else "{" + p[0] + "}" + p[1:]) for p in rest)


def strip_string(string: str) -> str:
    """verl's (Hendrycks') normalisation of a MATH answer; may raise on malformed input."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\\\%", "").replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    sides = string.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 5", "x=5" -> "5"
        string = sides[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def is_equiv(str1: str | None, str2: str | None) -> bool:
    """Equal after :func:`strip_string` (equal as raw strings when normalising raises)."""
    if str1 is None or str2 is None:
        return str1 is None and str2 is None
    try:
        return strip_string(str1) == strip_string(str2)
    except Exception:
        return str1 == str2


def compute_score(solution_str: str, ground_truth: Any) -> float:
    """1.0 when the last boxed answer of ``solution_str`` is equivalent to ``ground_truth``, else 0.0 (also
    when extraction fails)."""
    try:
        boxed = last_boxed_only_string(solution_str)
        if boxed is not None and is_equiv(remove_boxed(boxed), ground_truth):
            return 1.0
    except Exception:
        pass
    return 0.0
