"""Tiny tokenizer and parquet fixtures for the data tests."""

import pytest

from verl.data.preprocess.common import write_parquet
from verl.utils.tiny_model import build_tiny_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture
def make_parquet(tmp_path):
    def make(rows, name="train.parquet"):
        path = tmp_path / name
        write_parquet(rows, str(path))
        return str(path)

    return make
