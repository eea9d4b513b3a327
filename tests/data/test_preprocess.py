"""Preprocessors on small local fixtures shaped like the real datasets produce verl's parquet schema."""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch

from verl.data import RLHFDataset, collate_fn
from verl.data.preprocess import gsm8k, math
from verl.data.preprocess.common import DatasetUnavailableError, load_splits, write_parquet
from verl.protocol import DataProto
from verl.reward import NaiveRewardManager

GSM8K_TRAIN = [
    {"question": "Natalia sold clips to 48 friends in April, and half as many in May. How many in total?",
     "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nAltogether 48+24 = <<48+24=72>>72 clips.\n#### 72"},
    {"question": "A shop earns $1,200 a day for 3 days. How much?",
     "answer": "1,200 * 3 = <<1200*3=3600>>3,600\n#### 3,600"},
    {"question": "The temperature fell from 3 to -2. What is the new temperature?",
     "answer": "It is -2.\n#### -2"},
]  # fmt: skip
GSM8K_TEST = [{"question": "What is 6 times 7?", "answer": "6 * 7 = 42\n#### 42"}]

MATH_TRAIN = [
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "level": "Level 1", "type": "Prealgebra",
     "solution": "We get $\\frac{2}{4} + \\frac{1}{4} = \\boxed{\\frac{3}{4}}$."},
    {"problem": "Find the set.", "level": "Level 3", "type": "Algebra",
     "solution": "First \\boxed{1}, then the answer is $\\boxed{\\{1, 2\\}}$."},
    {"problem": "A proof without a boxed answer.", "level": "Level 5", "type": "Geometry",
     "solution": "It follows directly."},
]  # fmt: skip
MATH_TEST = [{"problem": "Compute $2^{10}$.", "level": "Level 1", "type": "Algebra", "solution": "$\\boxed{1024}$"}]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def gsm8k_repo(tmp_path):
    """The layout of a clone of the Hub repo: main/{train,test}-00000-of-00001.parquet."""
    write_parquet(GSM8K_TRAIN, str(tmp_path / "gsm8k" / "main" / "train-00000-of-00001.parquet"))
    write_parquet(GSM8K_TEST, str(tmp_path / "gsm8k" / "main" / "test-00000-of-00001.parquet"))
    return str(tmp_path / "gsm8k")


def test_gsm8k_schema(gsm8k_repo, tmp_path):
    out = tmp_path / "out"
    paths = gsm8k.main(["--local_dir", str(out), "--data_source", gsm8k_repo])
    assert paths == {"train": str(out / "train.parquet"), "test": str(out / "test.parquet")}
    train = pq.read_table(paths["train"]).to_pylist()
    assert [r["reward_model"] for r in train] == [
        {"style": "rule", "ground_truth": "72"},
        {"style": "rule", "ground_truth": "3600"},  # commas removed
        {"style": "rule", "ground_truth": "-2"},
    ]
    row = train[0]
    assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert row["data_source"] == "openai/gsm8k" and row["ability"] == "math"
    assert row["prompt"] == [{"role": "user", "content": GSM8K_TRAIN[0]["question"] + " " + gsm8k.INSTRUCTION}]
    assert row["prompt"][0]["content"].endswith('output the final answer after "####".')
    assert row["extra_info"] == {"split": "train", "index": 0, "answer": GSM8K_TRAIN[0]["answer"],
                                 "question": GSM8K_TRAIN[0]["question"]}  # fmt: skip
    test = pq.read_table(paths["test"]).to_pylist()
    assert len(test) == 1 and test[0]["extra_info"]["split"] == "test"


def test_gsm8k_extract_solution():
    assert gsm8k.extract_solution("work\n#### 1,234") == "1234"
    assert gsm8k.extract_solution("#### $5.") == "5"
    with pytest.raises(ValueError, match="####"):
        gsm8k.extract_solution("no final line")


def test_math_from_single_jsonl_files(tmp_path, capsys):
    for split, rows in (("train", MATH_TRAIN), ("test", MATH_TEST)):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    paths = math.main(["--local_dir", str(out), "--data_source", str(tmp_path / "train.jsonl")])
    assert "skipped 1 without an answer" in capsys.readouterr().out
    train = pq.read_table(paths["train"]).to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in train] == ["\\frac{3}{4}", "\\{1, 2\\}"]  # the last box
    assert train[0]["data_source"] == "DigitalLearningGmbH/MATH-lighteval"
    assert train[0]["prompt"][0]["content"].endswith("output the final answer within \\boxed{}.")
    assert train[1]["extra_info"] == {"split": "train", "index": 1, "level": "Level 3", "type": "Algebra"}
    assert pq.read_table(paths["test"]).to_pylist()[0]["reward_model"]["ground_truth"] == "1024"


def test_offline_name_gives_a_clear_error():
    with pytest.raises(DatasetUnavailableError, match="pass the local directory or file: --data_source"):
        load_splits("openai/gsm8k", "main")


def test_local_source_errors(tmp_path):
    (tmp_path / "only").mkdir()
    write_parquet(GSM8K_TRAIN, str(tmp_path / "only" / "train.parquet"))
    with pytest.raises(DatasetUnavailableError, match="no test split file"):
        load_splits(str(tmp_path / "only"))
    with pytest.raises(DatasetUnavailableError, match="test split file"):
        load_splits(str(tmp_path / "only" / "train.parquet"))
    (tmp_path / "data.jsonl").write_text("{}")
    with pytest.raises(DatasetUnavailableError, match="must contain 'train'"):
        load_splits(str(tmp_path / "data.jsonl"))


def test_cli_module_runs(gsm8k_repo, tmp_path):
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "verl.data.preprocess.gsm8k", "--local_dir", str(tmp_path / "o"), "--data_source"]
    ok = subprocess.run(cmd + [gsm8k_repo], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "wrote 3 rows" in ok.stdout and (tmp_path / "o" / "test.parquet").exists()
    bad = subprocess.run(cmd + ["openai/gsm8k"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "--data_source /path/to/copy" in bad.stderr


def test_preprocessed_rows_flow_into_dataset_and_rewards(gsm8k_repo, tmp_path, tokenizer):
    """gsm8k rows -> RLHFDataset -> DataProto -> (fake rollout) -> naive reward on the right tokens."""
    paths = gsm8k.main(["--local_dir", str(tmp_path / "out"), "--data_source", gsm8k_repo])
    ds = RLHFDataset(paths["train"], tokenizer, {"max_prompt_length": 96, "truncation": "left"})
    data = DataProto.from_single_dict(collate_fn([ds[i] for i in range(len(ds))]))
    answers = ["so #### 72", "#### 3,600", "#### 2"]  # right, right (commas), wrong sign
    r_len = 12
    rows = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for a in answers]
    responses = torch.tensor([r + [tokenizer.pad_token_id] * (r_len - len(r)) for r in rows])
    response_mask = torch.tensor([[1] * len(r) + [0] * (r_len - len(r)) for r in rows])
    data.batch["prompts"] = data.batch["input_ids"]
    data.batch["responses"] = responses
    data.batch["attention_mask"] = torch.cat([data.batch["attention_mask"], response_mask], dim=1)
    scores = NaiveRewardManager(tokenizer)(data)
    for i, (row, expected) in enumerate(zip(rows, [1.0, 1.0, 0.0])):
        assert scores[i, len(row) - 1] == expected and scores[i].sum() == expected
