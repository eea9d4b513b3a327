"""Prompt lengths are measured when the dataset is built: overlong rows fail (or are filtered) up front, large
files show progress, and the lengths are cached per file and tokenizer so a restart does not measure again."""

import copy
import os
import time

import numpy as np
import pytest

import verl.data.prompt_lengths as pl
from verl.data import RLHFDataset
from verl.utils.tiny_model import chat_prompt_ids

LONG = "What is " + " + ".join(["7"] * 30) + "?"


def rows(questions):
    return [{"data_source": "s", "prompt": [{"role": "user", "content": q}],
             "reward_model": {"ground_truth": "1"}} for q in questions]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VERL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "prompt_lengths"


@pytest.fixture
def count_measurements(monkeypatch):
    calls = []
    real = pl.measure_prompt_lengths

    def counting(rows, *args, **kwargs):
        calls.append(len(rows))
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(pl, "measure_prompt_lengths", counting)
    return calls


def test_overlong_row_in_the_last_place_fails_at_construction(tokenizer, make_parquet, cache):
    path = make_parquet(rows(["Hi"] * 99 + [LONG]))
    with pytest.raises(ValueError, match=r"train\.parquet, row 99: prompt is \d+ tokens, longer than "
                                         r"data\.max_prompt_length=32 \(1 of 100 prompts"):
        RLHFDataset(path, tokenizer, {"max_prompt_length": 32})


def test_rows_beyond_max_samples_are_not_served_so_not_checked(tokenizer, make_parquet, cache, count_measurements):
    path = make_parquet(rows(["Hi"] * 5 + [LONG]))
    ds = RLHFDataset(path, tokenizer, {"max_prompt_length": 32}, max_samples=5)
    assert len(ds) == 5 and count_measurements == [5]  # only the prefix in use was measured


def test_filter_overlong_prompts_drops_up_front(tokenizer, make_parquet, cache, caplog):
    path = make_parquet(rows(["Hi", LONG, "What is 1 + 1?", LONG]))
    with caplog.at_level("WARNING"):
        ds = RLHFDataset(path, tokenizer, {"max_prompt_length": 32, "filter_overlong_prompts": True})
    assert len(ds) == 2 and [ds.origins[i][1] for i in range(2)] == [0, 2]
    assert "dropped 2 of 4 prompts longer than data.max_prompt_length=32" in caplog.text
    assert ds.prompt_lengths.tolist() == [len(chat_prompt_ids(tokenizer, r["prompt"])) for r in rows(["Hi", "What is 1 + 1?"])]


def test_lengths_are_cached_by_file_and_tokenizer(tokenizer, make_parquet, cache, count_measurements):
    path = make_parquet(rows(["Hi", "What is 2 + 2?", LONG]))
    first = RLHFDataset(path, tokenizer, {"max_prompt_length": 256})
    assert count_measurements == [3] and len(list(cache.glob("*.npy"))) == 1
    second = RLHFDataset(path, tokenizer, {"max_prompt_length": 256})
    assert count_measurements == [3], "a restart reads the lengths back"
    np.testing.assert_array_equal(first.prompt_lengths, second.prompt_lengths)
    # another chat template is another tokenizer for this purpose
    other = copy.deepcopy(tokenizer)
    other.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    RLHFDataset(path, other, {"max_prompt_length": 256})
    assert count_measurements == [3, 3]
    # so is another chat-template argument, and a changed file
    RLHFDataset(path, tokenizer, {"max_prompt_length": 256, "apply_chat_template_kwargs": {"enable_thinking": False}})
    assert count_measurements == [3, 3, 3]
    time.sleep(0.01)
    make_parquet(rows(["Hi", LONG]))
    os.utime(path)
    assert len(RLHFDataset(path, tokenizer, {"max_prompt_length": 256})) == 2 and count_measurements[-1] == 2


def test_cache_can_be_turned_off(tokenizer, make_parquet, cache, count_measurements, monkeypatch):
    monkeypatch.setenv("VERL_PROMPT_LENGTH_CACHE", "0")
    path = make_parquet(rows(["Hi"]))
    RLHFDataset(path, tokenizer, {"max_prompt_length": 256})
    RLHFDataset(path, tokenizer, {"max_prompt_length": 256})
    assert count_measurements == [1, 1] and not cache.exists()


def test_large_files_show_progress(tokenizer, make_parquet, cache, monkeypatch, capsys):
    monkeypatch.setattr(pl, "PROGRESS_MIN_ROWS", 10)
    monkeypatch.setattr(pl, "BATCH_ROWS", 4)
    path = make_parquet(rows(["Hi"] * 12))
    RLHFDataset(path, tokenizer, {"max_prompt_length": 256})
    err = capsys.readouterr().err
    assert "prompt lengths of train.parquet" in err and "12/12" in err
