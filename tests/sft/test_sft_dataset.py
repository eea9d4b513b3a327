"""SFT data: the assistant-only loss mask (exact, hand-built), truncation, row formats and errors."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from verl.data.sft_dataset import SFTDataConfig, SFTDataset, sft_collate_fn, tokenize_conversation

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "And 4 * 6?"},
    {"role": "assistant", "content": "It is 24."},
]


def expected_ids_and_mask(tokenizer, pieces):
    """Concatenate hand-written ChatML pieces ``(text, trained)``, each tokenised on its own."""
    ids, mask = [], []
    for text, trained in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(trained)] * len(piece)
    return ids, mask


def test_multi_turn_mask_is_exactly_the_assistant_contents_and_their_end_tokens(tokenizer):
    ids, mask = tokenize_conversation(tokenizer, CONVERSATION)
    want_ids, want_mask = expected_ids_and_mask(tokenizer, [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
         "<|im_start|>assistant\n", False),
        ("5<|im_end|>", True),
        ("\n<|im_start|>user\nAnd 4 * 6?<|im_end|>\n<|im_start|>assistant\n", False),
        ("It is 24.<|im_end|>", True),
        ("\n", False),
    ])
    assert ids == want_ids
    assert mask == want_mask
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]) == "5<|im_end|>It is 24.<|im_end|>"


def test_multi_turn_dataset_with_tools_column(tokenizer, tmp_path):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    rows = [{"messages": CONVERSATION, "tools": None}, {"messages": CONVERSATION[1:3], "tools": tools}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    ds = SFTDataset(str(tmp_path / "chat.parquet"), tokenizer, {"multiturn": {"enable": True}, "max_length": 256})
    first, second = ds[0], ds[1]
    assert first["input_ids"].tolist() == tokenize_conversation(tokenizer, CONVERSATION)[0]
    assert "# Tools" in tokenizer.decode(second["input_ids"]) and "# Tools" not in tokenizer.decode(first["input_ids"])
    trained = second["input_ids"][second["loss_mask"].bool()]
    assert tokenizer.decode(trained) == "5<|im_end|>"
    assert second["attention_mask"].tolist() == [1] * len(second["input_ids"])
    assert second["position_ids"].tolist() == list(range(len(second["input_ids"])))


def test_single_turn_nested_keys(tokenizer, sft_files):
    train, _ = sft_files
    ds = SFTDataset(train, tokenizer, {"prompt_key": "extra_info", "response_key": "extra_info",
                                       "prompt_dict_keys": ["question"], "response_dict_keys": ["answer"]})
    assert len(ds) == 8
    item = ds[1]
    text = tokenizer.decode(item["input_ids"])
    assert text == ("<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"
                    "3 + 4 = 7. #### 7<|im_end|>\n")
    assert tokenizer.decode(item["input_ids"][item["loss_mask"].bool()]) == "3 + 4 = 7. #### 7<|im_end|>"


def test_prompt_column_of_chat_messages(tokenizer, tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "answer": "Hello"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    item = SFTDataset(str(tmp_path / "d.parquet"), tokenizer, {"prompt_key": "prompt"})[0]
    assert tokenizer.decode(item["input_ids"]).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert tokenizer.decode(item["input_ids"][item["loss_mask"].bool()]) == "Hello<|im_end|>"


@pytest.mark.parametrize("mode", ["left", "right"])
def test_truncation_cuts_ids_and_mask_together(tokenizer, sft_files, mode):
    train, _ = sft_files
    keys = {"prompt_key": "extra_info", "response_key": "extra_info", "prompt_dict_keys": ["question"],
            "response_dict_keys": ["answer"]}
    full = SFTDataset(train, tokenizer, keys)[0]
    cut = SFTDataset(train, tokenizer, {**keys, "max_length": 10, "truncation": mode})[0]
    part = slice(-10, None) if mode == "left" else slice(0, 10)
    assert cut["input_ids"].tolist() == full["input_ids"][part].tolist()
    assert cut["loss_mask"].tolist() == full["loss_mask"][part].tolist()
    with pytest.raises(ValueError, match=r"row 0: the conversation is \d+ tokens, longer than data.max_length=10"):
        SFTDataset(train, tokenizer, {**keys, "max_length": 10})[0]


def test_collate_right_pads(tokenizer):
    items = [{"input_ids": torch.tensor([5, 6, 7]), "loss_mask": torch.tensor([0, 1, 1]),
              "attention_mask": torch.ones(3, dtype=torch.long), "position_ids": torch.arange(3)},
             {"input_ids": torch.tensor([8]), "loss_mask": torch.tensor([1]),
              "attention_mask": torch.ones(1, dtype=torch.long), "position_ids": torch.arange(1)}]
    batch = sft_collate_fn(items, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["loss_mask"].tolist() == [[0, 1, 1], [1, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_bad_rows_and_settings_name_the_problem(tokenizer, sft_files, tmp_path):
    train, _ = sft_files
    with pytest.raises(ValueError, match=r"row 0: no column 'question'.*data.prompt_key"):
        SFTDataset(train, tokenizer, {})
    with pytest.raises(ValueError, match=r"cannot read key 'q' \(found \['answer', 'question'\]\)"):
        SFTDataset(train, tokenizer, {"prompt_key": "extra_info", "response_key": "extra_info",
                                      "prompt_dict_keys": ["q"], "response_dict_keys": ["answer"]})
    pq.write_table(pa.Table.from_pylist([{"messages": [{"role": "user", "content": "hi"}]}]), tmp_path / "u.parquet")
    with pytest.raises(ValueError, match="no assistant message"):
        SFTDataset(str(tmp_path / "u.parquet"), tokenizer, {"multiturn": {"enable": True}})
    with pytest.raises(ValueError, match="data.truncation='middl'"):
        SFTDataConfig(truncation="middl").validate()
    with pytest.raises(ValueError, match="unknown config key data.prompt_keys; did you mean data.prompt_key"):
        SFTDataset(train, tokenizer, {"prompt_keys": "x"})
