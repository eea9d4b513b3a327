"""Multi-turn SFT data with tool calls (warm starts for agentic RL): the loss mask is 1 exactly on the assistant
turns (tool calls included) and 0 on tool responses, with the tiny ChatML template and the real Qwen2.5 one."""

import copy
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl.data.sft_dataset import SFTDataset

TOOLS = [{"type": "function", "function": {"name": "calc", "description": "Evaluate an arithmetic expression",
                                           "parameters": {"type": "object", "properties": {"expr": {"type": "string"}},
                                                          "required": ["expr"]}}}]
CALL = {"id": "c0", "type": "function", "function": {"name": "calc", "arguments": json.dumps({"expr": "4821+3977"})}}
CONVERSATION = [
    {"role": "user", "content": "What is 4821 + 3977?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "content": "8798"},
    {"role": "assistant", "content": "#### 8798"},
]


def write(tmp_path, rows):
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    return str(tmp_path / "chat.parquet")


@pytest.mark.parametrize("template", ["tiny", "qwen2_5"])
def test_tool_call_conversation_trains_assistant_tokens_only(tokenizer, tmp_path, template):
    tok = copy.deepcopy(tokenizer)
    if template != "tiny":
        tok.chat_template = (Path(__file__).with_name("templates") / f"{template}.jinja").read_text()
    # arguments and tools stored as JSON strings, as data files usually hold them
    path = write(tmp_path, [{"messages": CONVERSATION, "tools": json.dumps(TOOLS)}])
    item = SFTDataset(path, tok, {"multiturn": {"enable": True}, "max_length": 1024})[0]
    ids, mask = item["input_ids"], item["loss_mask"].bool()
    text = tok.decode(ids)
    call_text = '<tool_call>\n{"name": "calc", "arguments": {"expr": "4821+3977"}}\n</tool_call>'
    assert call_text in text and '"expr": {"type": "string"}' in text  # arguments a dict again; tools listed
    trained = tok.decode(ids[mask])
    assert trained == f"{call_text}<|im_end|>#### 8798<|im_end|>"  # the call starts where the generation prompt ends
    # every trained token is inside an assistant turn: nothing of the tool response is trained
    assert "8798\n</tool_response>" in tok.decode(ids[~mask])


def test_a_token_across_the_generation_prompt_boundary_is_reported(tmp_path):
    """A template that writes "\n\n<tool_call>" after "assistant\n", with a tokenizer that merges "\n\n": training
    would see a token generation never does (the bug that kept a tiny model from ever calling its tool)."""
    from verl.data.sft_dataset import tokenize_conversation
    from verl.utils.tiny_model import build_tiny_tokenizer

    tok = build_tiny_tokenizer(extra_texts=["a\n\nb"] * 50)
    tok.chat_template = tok.chat_template.replace(
        "{{- '<|im_start|>' + message['role'] }}{%- if message['content'] %}", "{{- '<|im_start|>' + message['role'] + '\\n' }}{%- if message['content'] %}")
    messages = [{**m, "tool_calls": [{"function": {"name": "calc", "arguments": {"expr": "1+1"}}}]} if i == 1 else m
                for i, m in enumerate(CONVERSATION[:2])]
    with pytest.warns(UserWarning, match="spans the end of the generation prompt"):
        tokenize_conversation(tok, messages)


def test_bad_tool_call_arguments_are_named(tokenizer, tmp_path):
    bad = copy.deepcopy(CONVERSATION)
    bad[1]["tool_calls"][0]["function"]["arguments"] = "{expr: oops"
    path = write(tmp_path, [{"messages": bad, "tools": None}])
    with pytest.raises(ValueError, match="row 0.*message 1: tool call arguments are not valid JSON"):
        SFTDataset(path, tokenizer, {"multiturn": {"enable": True}})
