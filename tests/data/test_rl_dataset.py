"""RLHFDataset: chat template, left padding, truncation modes, filtering, bad rows, collation."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from verl.data import DataConfig, RLHFDataset, collate_fn, create_rl_dataset, truncate_ids
from verl.protocol import DataProto
from verl.utils.tiny_model import chat_prompt_ids

QUESTIONS = ["What is 2 + 3?", "What is 10 * 10? Show your work step by step please.", "Hi"]


def make_rows(questions=QUESTIONS, source="openai/gsm8k"):
    return [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": q}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(i)},
            "extra_info": {"split": "train", "index": 100 + i},
        }
        for i, q in enumerate(questions)
    ]


def full_ids(tokenizer, question):
    return chat_prompt_ids(tokenizer, [{"role": "user", "content": question}])


def test_item_is_chat_templated_and_left_padded(tokenizer, make_parquet):
    path = make_parquet(make_rows())
    ds = RLHFDataset(path, tokenizer, {"max_prompt_length": 64, "return_raw_chat": True, "return_full_prompt": True})
    assert len(ds) == 3
    item = ds[1]
    ids = full_ids(tokenizer, QUESTIONS[1])
    n = len(ids)
    assert n < 64
    assert item["input_ids"].shape == (64,) and item["input_ids"].dtype == torch.long
    assert item["input_ids"][-n:].tolist() == ids
    assert (item["input_ids"][:-n] == tokenizer.pad_token_id).all()
    assert item["attention_mask"].tolist() == [0] * (64 - n) + [1] * n
    assert item["position_ids"].tolist() == [0] * (64 - n) + list(range(n))
    assert item["raw_prompt_ids"] == ids
    assert item["full_prompts"].endswith("<|im_start|>assistant\n")  # add_generation_prompt
    assert item["raw_prompt"] == [{"role": "user", "content": QUESTIONS[1]}]
    # the other columns pass through; index comes from extra_info
    assert item["data_source"] == "openai/gsm8k" and item["ability"] == "math"
    assert item["reward_model"] == {"style": "rule", "ground_truth": "1"}
    assert item["index"] == 101 and item["tools_kwargs"] == {} and "prompt" not in item


def test_optional_fields_off_by_default(tokenizer, make_parquet):
    item = RLHFDataset(make_parquet(make_rows()), tokenizer, DataConfig(max_prompt_length=64))[0]
    assert "raw_prompt" not in item and "full_prompts" not in item


@pytest.mark.parametrize("mode", ["left", "right", "middle"])
def test_truncation_modes(tokenizer, make_parquet, mode):
    ids = full_ids(tokenizer, QUESTIONS[1])
    max_len = 9
    assert len(ids) > max_len
    ds = RLHFDataset(make_parquet(make_rows()), tokenizer, {"max_prompt_length": max_len, "truncation": mode})
    got = ds[1]["input_ids"].tolist()
    expected = {"left": ids[-9:], "right": ids[:9], "middle": ids[:4] + ids[-5:]}[mode]
    assert got == expected and ds[1]["attention_mask"].sum() == max_len


def test_truncation_error_names_file_and_row(tokenizer, make_parquet):
    path = make_parquet(make_rows())
    # found when the dataset is built (before any training), not when row 1 is first read
    with pytest.raises(ValueError, match=r"train\.parquet, row 0: prompt is 17 tokens.*max_prompt_length=12 \(2 of 3"):
        RLHFDataset(path, tokenizer, {"max_prompt_length": 12, "truncation": "error"})


def test_truncate_ids_function():
    ids = list(range(10))
    assert truncate_ids(ids, 4, "left") == [6, 7, 8, 9]
    assert truncate_ids(ids, 4, "right") == [0, 1, 2, 3]
    assert truncate_ids(ids, 5, "middle") == [0, 1, 7, 8, 9]
    assert truncate_ids(ids, 1, "middle") == [9]
    assert truncate_ids(ids, 20, "error") == ids
    with pytest.raises(ValueError, match="truncation mode"):
        truncate_ids(ids, 4, "error")


def test_filter_overlong_prompts(tokenizer, make_parquet):
    lengths = [len(full_ids(tokenizer, q)) for q in QUESTIONS]
    limit = sorted(lengths)[1]  # keeps the two shortest
    ds = RLHFDataset(make_parquet(make_rows()), tokenizer, {"max_prompt_length": limit, "filter_overlong_prompts": True})
    kept = sorted(item["index"] - 100 for item in ds)
    assert kept == [i for i, n in enumerate(lengths) if n <= limit] and len(kept) == 2


def test_many_files_and_formats(tokenizer, make_parquet, tmp_path):
    a = make_parquet(make_rows(QUESTIONS[:2]), "a.parquet")
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join(json.dumps(r) for r in make_rows(QUESTIONS[2:], source="math")))
    c = tmp_path / "c.json"
    c.write_text(json.dumps([{"prompt": [{"role": "user", "content": "extra"}], "data_source": "x", "note": 7}]))
    ds = RLHFDataset([a, str(b), str(c)], tokenizer, {"max_prompt_length": 64}, max_samples=-1)
    assert [ds[i]["data_source"] for i in range(len(ds))] == ["openai/gsm8k", "openai/gsm8k", "math", "x"]
    batch = collate_fn([ds[i] for i in range(len(ds))])
    assert batch["note"].tolist() == [None, None, None, 7]  # a column only one file has
    assert len(RLHFDataset([a, str(b)], tokenizer, {"max_prompt_length": 64}, max_samples=2)) == 2


def test_collate_into_dataproto(tokenizer, make_parquet):
    ds = RLHFDataset(make_parquet(make_rows()), tokenizer, {"max_prompt_length": 64, "return_raw_chat": True})
    batch = collate_fn([ds[i] for i in range(3)])
    data = DataProto.from_single_dict(batch)
    assert data.batch["input_ids"].shape == (3, 64) and data.batch["position_ids"].shape == (3, 64)
    nt = data.non_tensor_batch
    assert nt["reward_model"].dtype == object and nt["reward_model"].shape == (3,)
    assert nt["raw_prompt"][0] == [{"role": "user", "content": QUESTIONS[0]}]  # lists stay lists
    assert isinstance(nt["raw_prompt_ids"][0], list) and nt["index"].tolist() == [100, 101, 102]
    with pytest.raises(ValueError, match="empty"):
        collate_fn([])


@pytest.mark.parametrize(
    "bad_row,match",
    [
        ({"prompt": "What is 1+1?"}, r"row 1, column 'prompt': expected a non-empty list of chat messages.*got str"),
        ({"prompt": []}, r"row 1, column 'prompt': expected a non-empty list"),
        ({"prompt": [{"content": "hi"}]}, r"row 1, column 'prompt', message 0: expected a dict with a string 'role'"),
        ({"prompt": [{"role": "user", "content": 5}]}, r"row 1, column 'prompt', message 0: 'content' must be a string"),
        ({"reward_model": "42"}, r"row 1, column 'reward_model': expected dict, got str"),
    ],
)
def test_bad_rows_name_file_row_and_column(tokenizer, tmp_path, bad_row, match):
    rows = make_rows(QUESTIONS[:2])
    rows[1].update(bad_row)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=r"bad\.jsonl, " + match):
        RLHFDataset(str(path), tokenizer, {"max_prompt_length": 64})


def test_missing_prompt_column_and_file(tokenizer, make_parquet, tmp_path):
    path = make_parquet([{"question": "hi", "data_source": "x"}])
    with pytest.raises(ValueError, match=r"no column 'prompt' \(columns: \['data_source', 'question'\]\); set data.prompt_key"):
        RLHFDataset(path, tokenizer, {"max_prompt_length": 64})
    with pytest.raises(FileNotFoundError, match="preprocess"):
        RLHFDataset(str(tmp_path / "nope.parquet"), tokenizer)
    with pytest.raises(ValueError, match="unsupported format"):
        (tmp_path / "x.csv").write_text("a")
        RLHFDataset(str(tmp_path / "x.csv"), tokenizer)


def test_data_config_validation():
    assert DataConfig.from_any(OmegaConf.create({"max_prompt_length": 7})).max_prompt_length == 7
    assert DataConfig.from_any({"custom_cls": {"path": None, "name": None}}).custom_cls.path is None
    with pytest.raises(ValueError, match=r"unknown config key data.max_prompt_len; did you mean data.max_prompt_length"):
        DataConfig.from_any({"max_prompt_len": 7})
    with pytest.raises(ValueError, match="data.max_prompt_length must be an integer"):
        DataConfig.from_any({"max_prompt_length": "long"})
    with pytest.raises(ValueError, match="data.truncation"):
        DataConfig(truncation="cut")
    with pytest.raises(ValueError, match="max_prompt_length"):
        DataConfig(max_prompt_length=0)


def test_create_rl_dataset_max_samples_and_custom_cls(tokenizer, make_parquet, tmp_path):
    path = make_parquet(make_rows())
    cfg = {"max_prompt_length": 64, "train_max_samples": 2, "val_max_samples": 1}
    assert len(create_rl_dataset(path, cfg, tokenizer, is_train=True)) == 2
    assert len(create_rl_dataset(path, cfg, tokenizer, is_train=False)) == 1
    custom = tmp_path / "my_ds.py"
    custom.write_text(
        "from verl.data import RLHFDataset\n"
        "class Doubled(RLHFDataset):\n"
        "    def __len__(self):\n"
        "        return 2 * len(self.rows)\n"
        "    def __getitem__(self, i):\n"
        "        return super().__getitem__(i % len(self.rows))\n"
    )
    ds = create_rl_dataset(path, {"max_prompt_length": 64, "custom_cls": {"path": str(custom), "name": "Doubled"}}, tokenizer)
    assert type(ds).__name__ == "Doubled" and len(ds) == 6
    assert np.array_equal(ds[4]["input_ids"], ds[1]["input_ids"])


def test_requires_chat_template(tokenizer, make_parquet):
    import copy

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        RLHFDataset(make_parquet(make_rows()), plain)
