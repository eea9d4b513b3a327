"""Rule scorers on tables of tricky answers with verl's expected scores, our lenient option, and the dispatch."""

import pytest

from verl.utils.reward_score import (
    UnknownDataSourceError,
    default_compute_score,
    gsm8k,
    lenient,
    math,
    math_dapo,
    register_scorer,
    registered_data_sources,
)

# ---------------------------------------------------------------------------------------------- gsm8k
# Expected values are verl's (verl/utils/reward_score/gsm8k.py): "#### " then [-0-9.,]+, compared as a string.

GSM8K_STRICT = [
    ("The total is 10 + 62 = 72.\n#### 72", "72", 1.0),
    ("#### 1,234", "1234", 1.0),  # strict removes commas
    ("so she pays #### $18", "18", 0.0),  # "$" is not part of the number: no match at all
    ("#### 72.0", "72", 0.0),  # compared as strings
    ("#### 72.", "72", 0.0),  # the period is captured
    ("####72", "72", 0.0),  # "#### " needs its space
    ("#### -5", "-5", 1.0),
    ("#### -5", "5", 0.0),
    ("#### 3 #### 4", "4", 1.0),  # the last #### wins
    ("#### 3 #### 4", "3", 0.0),
    ("The answer is 72", "72", 0.0),  # strict needs ####
    ("#### seventy-two", "72", 0.0),
    ("", "72", 0.0),
]


@pytest.mark.parametrize("response,truth,expected", GSM8K_STRICT)
def test_gsm8k_strict_matches_verl(response, truth, expected):
    assert gsm8k.compute_score(response, truth) == expected
    assert default_compute_score("openai/gsm8k", response, truth) == expected


GSM8K_FLEXIBLE = [
    ("so the answer is 1,234 apples", "1234", 0.0),  # flexible keeps the comma: "1,234" != "1234"
    ("so the answer is 1,234 apples", "1,234", 1.0),
    ("first 5 then 7", "5", 0.0),  # the last number counts
    ("it costs $-3", "-3", 1.0),
    ("the answer is 72.", "72", 0.0),  # "72." is captured
    ("value . and .", ".", 1.0),  # only "." runs: the first one is kept, as verl does
]


@pytest.mark.parametrize("response,truth,expected", GSM8K_FLEXIBLE)
def test_gsm8k_flexible_matches_verl(response, truth, expected):
    assert gsm8k.compute_score(response, truth, method="flexible") == expected


def test_gsm8k_format_score_and_score():
    # a wrong answer in the right format gets format_score; no answer at all gets 0
    assert gsm8k.compute_score("#### 71", "72", format_score=0.1) == 0.1
    assert gsm8k.compute_score("#### 72.0", "72", format_score=0.1) == 0.1
    assert gsm8k.compute_score("no number", "72", format_score=0.1) == 0
    assert gsm8k.compute_score("#### 72", "72", score=2.0) == 2.0
    assert gsm8k.compute_score("#### 72", 72) == 0.0  # a non-string ground truth never equals the text


def test_gsm8k_only_searches_the_tail():
    assert gsm8k.extract_solution("#### 5 " + "x" * 400) is None
    assert gsm8k.extract_solution("x" * 400 + " #### 5") == "5"
    with pytest.raises(ValueError, match="strict"):
        gsm8k.extract_solution("#### 5", method="loose")


GSM8K_LENIENT = [
    ("so she pays #### $18", "18", 1.0),
    ("#### $1,000.00", "1000", 1.0),
    ("#### 72.", "72", 1.0),
    ("#### 72.0", "72", 1.0),
    ("####72", "72", 1.0),
    ("#### -5", "5", 0.0),
]


@pytest.mark.parametrize("response,truth,expected", GSM8K_LENIENT)
def test_gsm8k_lenient_option(response, truth, expected):
    assert gsm8k.compute_score_lenient(response, truth) == expected
    assert lenient.compute_score("openai/gsm8k", response, truth) == expected


def test_gsm8k_lenient_normalize_number():
    assert gsm8k.normalize_number("$1,234.50") == "1234.5"
    assert gsm8k.normalize_number("-0") == "0"
    assert gsm8k.normalize_number("abc") is None
    assert gsm8k.compute_score_lenient("so the answer is 1,234 apples.", "1234", method="flexible") == 1.0
    with pytest.raises(ValueError, match="not a number"):
        gsm8k.compute_score_lenient("#### 5", "five")


# ---------------------------------------------------------------------------------------------- math (lenient option)

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


def test_math_dapo_lenient_option():
    right = math_dapo.compute_score_lenient("work...\nAnswer: \\frac{1}{2}", "0.5")
    assert right == {"score": 1.0, "acc": True, "pred": "\\frac{1}{2}"}
    assert math_dapo.compute_score_lenient("\\boxed{4}", "4")["acc"] is True  # a box is enough here
    assert math_dapo.compute_score_lenient("nothing", "4") == {"score": -1.0, "acc": False, "pred": ""}
    assert lenient.compute_score("aime2024", "Answer: \\boxed{0.5}", "\\frac12")["score"] == 1.0


# ---------------------------------------------------------------------------------------------- dispatch


def test_default_compute_score_dispatch():
    assert default_compute_score("openai/gsm8k", "#### 3", "3") == 1.0
    assert default_compute_score("DigitalLearningGmbH/MATH-lighteval", "\\boxed{3}", "3") == 1.0
    assert default_compute_score("lighteval/MATH", "\\boxed{4}", "3") == 0.0
    assert default_compute_score("aime2024", "Answer: 7", "7")["score"] == 1.0  # prefix match
    # verl scores "math" with the DAPO scorer: an "Answer:" line, +-1
    assert default_compute_score("math", "Answer: 7", "7")["score"] == 1.0
    assert default_compute_score("math", "\\boxed{8}", "7")["score"] == -1.0  # -1, not 0: the DAPO scorer
    assert default_compute_score("searchR1_nq", "<answer>Paris</answer>", {"target": ["paris"]}) == 1.0
    assert isinstance(default_compute_score("openai/gsm8k", "#### 3", "3"), float)
    assert isinstance(default_compute_score("openai/gsm8k", "nothing", "3"), float)


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
