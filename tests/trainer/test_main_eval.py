"""Offline evaluation: scores and pass@k of a fixture with known answers, custom score functions, errors."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl.trainer.main_eval import main, pass_at_k


def write(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


ROWS = [
    # gsm8k, ground truth 72: 1 of 4 responses correct ("#### 72"), one has the number but not the format
    {"data_source": "openai/gsm8k", "reward_model": {"ground_truth": "72"},
     "responses": ["She sold 72 clips. #### 72", "#### 71", "72", "#### 7"]},
    # gsm8k, ground truth 10: 2 of 4 correct ("#### 10.0" is not "10" to verl's string match)
    {"data_source": "openai/gsm8k", "reward_model": {"ground_truth": "10"},
     "responses": ["#### 10", "#### 10", "#### 11", "#### 10.0"]},
    # MATH: 2 of 4 correct
    {"data_source": "lighteval/MATH", "reward_model": {"ground_truth": "\\frac{1}{2}"},
     "responses": ["\\boxed{\\frac{1}{2}}", "\\boxed{3}", "\\boxed{\\frac{1}{2}}", "\\boxed{2}"]},
]


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 2) == 0.5  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 3, 2) == 1.0 and pass_at_k(5, 2, 4) == 1.0
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)


def test_scores_and_pass_at_k_per_data_source(tmp_path, capsys):
    path = write(tmp_path / "gen.parquet", ROWS)
    metrics = main([f"data.path={path}", "ray_init.num_cpus=2"])
    assert metrics == pytest.approx({
        "test_score/openai/gsm8k": 3 / 8,
        "test_score/openai/gsm8k/pass@1": (1 / 4 + 2 / 4) / 2,
        "test_score/openai/gsm8k/pass@2": ((1 - 3 / 6) + (1 - 1 / 6)) / 2,  # 1 - C(3,2)/C(4,2); 1 - C(2,2)/C(4,2)
        "test_score/openai/gsm8k/pass@4": 1.0,
        "test_score/lighteval/MATH": 2 / 4,
        "test_score/lighteval/MATH/pass@1": 2 / 4,
        "test_score/lighteval/MATH/pass@2": 1 - 1 / 6,  # 1 - C(2,2)/C(4,2)
        "test_score/lighteval/MATH/pass@4": 1.0,
    })
    assert json.loads((tmp_path / "gen_eval.json").read_text()) == pytest.approx(metrics)
    assert "test_score/openai/gsm8k: 0.3750" in capsys.readouterr().out


def test_custom_score_function_and_single_responses(tmp_path):
    fn = tmp_path / "my_reward.py"
    fn.write_text("def length_score(data_source, solution_str, ground_truth, extra_info=None, scale=1.0):\n"
                  "    return {'score': scale * len(solution_str) / len(ground_truth), 'extra': 1}\n")
    rows = [{"data_source": "toy", "reward_model": {"ground_truth": "abcd"}, "responses": ["ab"]},
            {"data_source": "toy", "reward_model": {"ground_truth": "abcd"}, "responses": ["abcdabcd"]}]
    path = write(tmp_path / "toy.parquet", rows)
    out = tmp_path / "metrics" / "toy.json"
    metrics = main([f"data.path={path}", f"data.output_path={out}", f"custom_reward_function.path={fn}",
                    "custom_reward_function.name=length_score", "+custom_reward_function.reward_kwargs.scale=2.0"])
    assert metrics == {"test_score/toy": pytest.approx((2 * 0.5 + 2 * 2.0) / 2)}  # n = 1: no pass@k
    assert json.loads(out.read_text()) == metrics


def test_bad_rows_and_failing_scorers_are_named(tmp_path):
    path = write(tmp_path / "a.parquet", [{"data_source": "openai/gsm8k", "reward_model": {"ground_truth": "1"},
                                           "responses": "#### 1"}])
    with pytest.raises(ValueError, match=r"row 0: 'responses' must be a list of response strings"):
        main([f"data.path={path}"])
    path = write(tmp_path / "b.parquet", [{"data_source": "openai/gsm8k", "responses": ["#### 1"]}])
    with pytest.raises(ValueError, match=r"row 0: no column 'reward_model'"):
        main([f"data.path={path}"])
    path = write(tmp_path / "c.parquet", [{"data_source": "no_such_source", "reward_model": {"ground_truth": "1"},
                                           "responses": ["x"]}])
    with pytest.raises(RuntimeError, match=r"scoring row 0 \(data_source='no_such_source'\) failed: error"):
        main([f"data.path={path}"])
