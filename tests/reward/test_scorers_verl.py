"""verl's (verl-project/verl, current) scores on tricky answers: MATH (math_reward), DAPO math (math_dapo / aime / math), Search-R1 QA.

Every expected value below was derived by reading verl's scorer for that data source
(verl/utils/reward_score/{math_reward,math_dapo,search_r1_like_qa_em}.py); our default must give the same.
"""

import numpy as np
import pytest

from verl.utils.reward_score import UnknownDataSourceError, default_compute_score, math_dapo, math_reward
from verl.utils.reward_score import search_r1_like_qa_em as search_r1

MATH_REWARD = [
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", 1.0),
    ("\\boxed{0.5}", "\\frac{1}{2}", 1.0),  # the one decimal verl rewrites
    ("\\boxed{0.25}", "\\frac14", 0.0),  # no numeric equality otherwise
    ("\\boxed{1/2}", "\\frac{1}{2}", 1.0),
    ("\\boxed{10\\%}", "10", 1.0),
    ("\\boxed{1,000}", "1000", 0.0),  # thousands separators are not removed
    ("\\boxed{x = 5}", "5", 1.0),
    ("\\boxed{10\\text{ cm}}", "10", 1.0),
    ("so $\\boxed 5$.", "5", 1.0),
    ("$\\boxed{5}$ and later \\boxed 6", "5", 0.0),  # any "\boxed " wins over braces
    ("\\fbox{5}", "5", 0.0),  # found, but only \boxed can be unwrapped
    ("\\boxed{\\sqrt2}", "\\sqrt{2}", 1.0),
    ("\\boxed{.5}", "\\frac12", 1.0),
    ("\\boxed{5", "5", 0.0),
    ("\\boxed{\\frac}", "\\frac", 1.0),  # normalising raises: the raw strings are compared
    ("\\boxed{90^\\circ}", "90", 1.0),
    ("\\boxed{\\$18}", "18", 1.0),
    ("\\boxed{ \\left( 1,2 \\right) }", "(1,2)", 1.0),
    ("the answer is 5", "5", 0.0),
]


@pytest.mark.parametrize("response,truth,expected", MATH_REWARD)
def test_math_reward_matches_verl(response, truth, expected):
    assert math_reward.compute_score(response, truth) == expected
    assert default_compute_score("HuggingFaceH4/MATH-500", response, truth) == expected


MATH_DAPO = [
    ("Answer: 5", "5", 1.0, "5"),
    ("answer:5", "5", 1.0, "5"),  # case-insensitive
    ("Answer: \\boxed{5}", "5", 1.0, "5"),
    ("Answer: \\boxed{ 2 }", "2", 1.0, "2"),  # spaces are dropped before unboxing
    ("\\boxed{2}", "2", 1.0, "2"),  # no "Answer:" line: the last box, compared verbatim
    ("The answer is \\boxed{7}", "7", 1.0, "7"),
    ("so \\boxed{ 2 }", "2", -1.0, " 2 "),
    ("so \\boxed{0.5}", "\\frac12", -1.0, "0.5"),
    ("nothing here", "4", -1.0, "[INVALID]"),
    ("Answer: 0.5", "\\frac12", -1.0, "0.5"),
    ("Answer: \\dfrac{1}{2}", "\\frac{1}{2}", -1.0, "\\dfrac{1}{2}"),
    ("Answer: 10\\%", "10", -1.0, "10\\%"),
    ("Answer: x = 5", "5", 1.0, "5"),
    ("Answer: 1,000", "1000", 1.0, "1000"),
    ("Answer: 5 dollars", "5", 1.0, "5"),
    ("Answer: $\\frac{3}{4}$", "\\frac34", 1.0, "\\frac{3}{4}"),
    ("Answer: 7\nso that is it", "7", 1.0, "7"),
    ("Answer: 3\nAnswer: 4", "4", 1.0, "4"),
    ("Answer: 90^\\circ", "90", 1.0, "90"),
    ("Answer: \\text{(B)}", "B", -1.0, "(B)"),
    ("Answer: 7" + "x" * 300, "7", -1.0, "[INVALID]"),  # only the last 300 characters count
]


@pytest.mark.parametrize("response,truth,score,pred", MATH_DAPO)
def test_math_dapo_matches_verl(response, truth, score, pred):
    expected = {"score": score, "acc": score > 0, "pred": pred}
    assert math_dapo.compute_score(response, truth) == expected
    for source in ("math_dapo", "math", "aime2025"):
        assert default_compute_score(source, response, truth) == expected


def test_math_dapo_strict_box():
    assert math_dapo.compute_score("so \\boxed{7}", "7", strict_box_verify=True) == {"score": 1.0, "acc": True, "pred": "7"}
    assert math_dapo.compute_score("so \\boxed{ 7}", "7", strict_box_verify=True)["score"] == -1.0
    assert math_dapo.compute_score("\\boxed{7}" + "x" * 100, "7", strict_box_verify=True)["pred"] is None


SEARCH_R1 = [
    ("<answer>The Paris</answer>", ["Paris"], 1.0),
    ("<answer> paris! </answer>", "Paris", 1.0),
    ("<answer>London</answer>", ["Paris"], 0.0),
    ("Paris", ["Paris"], 0.0),  # no answer tags
    ("<answer>London</answer> then <answer>Paris</answer>", ["Paris"], 1.0),  # the last answer
    ("<answer>x</answer>" * 10 + "<answer>Paris</answer>", ["Paris"], 0.25),  # tag spamming
    ("<answer>Rome</answer>", np.array(["Paris", "Rome"], dtype=object), 1.0),  # parquet gives arrays
]


@pytest.mark.parametrize("response,target,expected", SEARCH_R1)
def test_search_r1_matches_verl(response, target, expected):
    assert search_r1.compute_score(response, {"target": target}) == expected
    assert default_compute_score("searchR1_hotpotqa", response, {"target": target}) == expected


def test_search_r1_format_score_and_subem():
    assert search_r1.compute_score("<answer>London</answer>", {"target": ["Paris"]}, format_score=0.2) == 0.2
    assert search_r1.compute_score_subem("<answer>it is Paris, France</answer>", {"target": ["paris"]}) == 1.0
    assert search_r1.compute_score("<answer>it is Paris, France</answer>", {"target": ["paris"]}) == 0.0


@pytest.mark.parametrize("source,package", [("numina_cn_k12", "pylatexenc"), ("hiyouga/geometry3k", "mathruler")])
def test_sources_verl_knows_but_we_do_not_score_say_so(source, package):
    with pytest.raises(UnknownDataSourceError, match=f"needs the package '{package}'.*custom_reward_function.path"):
        default_compute_score(source, "\\boxed{1}", "1")


def test_lenient_option_loads_as_a_custom_reward_function_by_package_path():
    from verl.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(
        {"custom_reward_function": {"path": "pkg://verl.utils.reward_score.lenient", "name": "compute_score"}}
    )
    assert fn(data_source="openai/gsm8k", solution_str="#### 72.0", ground_truth="72", extra_info={}) == 1.0
    assert default_compute_score("openai/gsm8k", "#### 72.0", "72") == 0.0
