"""Rule scorers on a table of tricky answers, and the data-source dispatch."""

import pytest

from verl.utils.reward_score import (
    UnknownDataSourceError,
    default_compute_score,
    gsm8k,
    math,
    math_dapo,
    register_scorer,
    registered_data_sources,
)

# ---------------------------------------------------------------------------------------------- gsm8k

GSM8K_STRICT = [
    ("The total is 10 + 62 = 72.\n#### 72", "72", 1.0),
    ("#### 1,234", "1234", 1.0),
    ("so she pays #### $18", "18", 1.0),
    ("#### $1,000.00", "1000", 1.0),
    ("The change is #### -5", "-5", 1.0),
    ("#### -5", "5", 0.0),  # sign matters
    ("#### 72.", "72", 1.0),  # a sentence-ending period is not a decimal point
    ("#### 0.50", "0.5", 1.0),
    ("#### 3 #### 4", "4", 1.0),  # the last #### wins
    ("#### 3 #### 4", "3", 0.0),
    ("The answer is 72", "72", 0.0),  # strict needs ####
    ("#### seventy-two", "72", 0.0),  # no number after ####
    ("", "72", 0.0),
]


@pytest.mark.parametrize("response,truth,expected", GSM8K_STRICT)
def test_gsm8k_strict(response, truth, expected):
    assert gsm8k.compute_score(response, truth) == expected


def test_gsm8k_flexible_and_format_score():
    assert gsm8k.compute_score("so the answer is 1,234 apples.", "1234", method="flexible") == 1.0
    assert gsm8k.compute_score("first 5 then 7", "5", method="flexible") == 0.0  # the last number counts
    assert gsm8k.compute_score("it costs $-3", "-3", method="flexible") == 1.0
    # an answer in the right format but wrong gets format_score; no answer at all gets 0
    assert gsm8k.compute_score("#### 71", "72", format_score=0.1) == 0.1
    assert gsm8k.compute_score("no number", "72", format_score=0.1) == 0.0
    assert gsm8k.compute_score("#### 72", "72", score=2.0) == 2.0


def test_gsm8k_only_searches_the_tail():
    # strict extraction looks at the last 300 characters: an early "####" followed by a long text is ignored
    assert gsm8k.extract_solution("#### 5 " + "x" * 400) is None
    assert gsm8k.extract_solution("x" * 400 + " #### 5") == "5"
    with pytest.raises(ValueError, match="strict"):
        gsm8k.extract_solution("#### 5", method="loose")


def test_gsm8k_normalize_number():
    assert gsm8k.normalize_number("$1,234.50") == "1234.5"
    assert gsm8k.normalize_number("-0") == "0"
    assert gsm8k.normalize_number("1e3") == "1000"
    assert gsm8k.normalize_number("abc") is None
    with pytest.raises(ValueError, match="not a number"):
        gsm8k.compute_score("#### 5", "five")


# ---------------------------------------------------------------------------------------------- math

BOXED = [
    ("so \\boxed{5}.", "5"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),  # the last box
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces
    ("\\boxed{x^{2^{3}}+\\sqrt{\\frac{a}{b}}}", "x^{2^{3}}+\\sqrt{\\frac{a}{b}}"),  # nested braces
    ("$\\boxed 7$", "7"),
    ("\\fbox{42}", "42"),
    ("\\boxed{unclosed", None),
    ("no box at all", None),
]


@pytest.mark.parametrize("text,expected", BOXED)
def test_extract_boxed(text, expected):
    assert math.extract_boxed_answer(text) == expected


MATH_EQUIV = [
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("\\tfrac12", "\\frac{1}{2}", True),
    ("0.5", "\\frac{1}{2}", True),
    ("1/2", "\\frac{1}{2}", True),
    ("-\\frac{3}{4}", "-0.75", True),
    ("\\frac{3}{4}", "-0.75", False),
    ("1,000", "1000", True),
    ("\\$18", "18", True),
    ("10\\text{ cm}", "10", True),
    ("10 \\mbox{inches}^2", "10", True),
    ("90^\\circ", "90", True),
    ("50\\%", "50", True),
    ("x = 5", "5", True),
    ("\\left( 1, 2 \\right)", "(1,2)", True),
    ("\\sqrt2", "\\sqrt{2}", True),
    ("3\\, \\sqrt{2}", "3\\sqrt{2}", True),
    ("\\text{(B)}", "(B)", True),
    (".5", "0.5", True),
    ("2m", "2", False),  # a variable, not a unit
    ("\\frac{1}{3}", "0.33", False),
    ("(1,2)", "(2,1)", False),
]


@pytest.mark.parametrize("pred,truth,equal", MATH_EQUIV)
def test_math_is_equiv(pred, truth, equal):
    assert math.is_equiv(pred, truth) is equal


def test_math_compute_score():
    assert math.compute_score("Thus the area is $\\boxed{\\dfrac{3}{4}}$.", "\\frac34") == 1.0
    assert math.compute_score("The answer is 3/4", "\\frac{3}{4}") == 0.0  # no box
    assert math.compute_score("\\boxed{12}", "\\boxed{12}") == 1.0  # a boxed ground truth is unboxed
    assert math.compute_score("\\boxed{13}", "12") == 0.0


def test_math_dapo_returns_dict():
    right = math_dapo.compute_score("work...\nAnswer: \\frac{1}{2}", "0.5")
    assert right == {"score": 1.0, "acc": True, "pred": "\\frac{1}{2}"}
    wrong = math_dapo.compute_score("Answer: 3", "4")
    assert wrong["score"] == -1.0 and wrong["acc"] is False and wrong["pred"] == "3"
    assert math_dapo.compute_score("\\boxed{4}", "4")["acc"] is True
    assert math_dapo.compute_score("nothing", "4") == {"score": -1.0, "acc": False, "pred": ""}


# ---------------------------------------------------------------------------------------------- dispatch


def test_default_compute_score_dispatch():
    assert default_compute_score("openai/gsm8k", "#### 3", "3") == 1.0
    assert default_compute_score("DigitalLearningGmbH/MATH-lighteval", "\\boxed{3}", "3") == 1.0
    assert default_compute_score("lighteval/MATH", "\\boxed{4}", "3") == 0.0
    assert default_compute_score("aime2024", "Answer: 7", "7")["score"] == 1.0  # prefix match
    assert isinstance(default_compute_score("openai/gsm8k", "#### 3", "3"), float)


def test_unknown_data_source_says_how_to_register():
    with pytest.raises(UnknownDataSourceError) as err:
        default_compute_score("my/dataset", "x", "y")
    msg = str(err.value)
    assert "my/dataset" in msg and "custom_reward_function.path" in msg and "register_scorer" in msg
    assert isinstance(err.value, NotImplementedError)  # verl raises NotImplementedError here too


def test_register_scorer():
    name = "tests/reverse_echo"

    @register_scorer(name)
    def reverse(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
        return {"score": float(solution_str[::-1] == ground_truth), "len": len(solution_str)}

    try:
        assert name in registered_data_sources()
        assert default_compute_score(name, "abc", "cba") == {"score": 1.0, "len": 3}
        with pytest.raises(ValueError, match="already registered"):
            register_scorer(name, reverse)
        register_scorer(name, lambda *a, **k: True, override=True)
        assert default_compute_score(name, "abc", "zzz") == 1.0  # bool -> float
    finally:
        from verl.utils.reward_score import _EXACT

        _EXACT.pop(name, None)
