"""A tiny tokenizer and model, and small SFT parquet files, shared by the SFT tests."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

QA = [(1, 2), (3, 4), (5, 6), (7, 8), (10, 20), (30, 40), (11, 12), (9, 9)]


def qa_rows():
    """GSM8K-shaped rows: the question and answer nested in ``extra_info``."""
    return [{"data_source": "openai/gsm8k",
             "extra_info": {"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}. #### {a + b}"}}
            for a, b in QA]


@pytest.fixture(scope="session")
def tokenizer():
    from verl.utils.tiny_model import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer):
    from verl.utils.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"), tokenizer, num_layers=2, seed=0)


@pytest.fixture(scope="session")
def sft_files(tmp_path_factory):
    """(train.parquet, val.parquet) with 8 and 3 rows."""
    root = tmp_path_factory.mktemp("sft_data")
    rows = qa_rows()
    pq.write_table(pa.Table.from_pylist(rows), root / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:3]), root / "val.parquet")
    return str(root / "train.parquet"), str(root / "val.parquet")


@pytest.fixture(scope="session")
def chats(tmp_path_factory):
    """The question/answer pairs as chat rows (``messages``), one parquet file."""
    root = tmp_path_factory.mktemp("chats")
    rows = [{"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                          {"role": "assistant", "content": f"{a + b}"}]} for a, b in QA]
    pq.write_table(pa.Table.from_pylist(rows), root / "train.parquet")
    return str(root / "train.parquet")
