"""The tiny tokenizer the agent-loop tests share."""

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    from verl.utils.tiny_model import build_tiny_tokenizer

    return build_tiny_tokenizer(extra_texts=["add", "answer", "arguments", "name", "tool_call", "tool_response"])
