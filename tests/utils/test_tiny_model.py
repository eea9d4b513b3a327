"""The offline tiny tokenizer/model: chat template, save/reload round trip, every architecture loads."""

import json

import pytest
import torch

from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer, chat_prompt_ids

TEXTS = [
    "What is 12 + 7? Let's think step by step and output the final answer after \"####\".",
    "Hello  world\n\n  123,456 $18 #### -5 \\boxed{\\frac{1}{2}}",
    "unusual wörds ünïcode 😀 and tabs\tand 'quotes' don't",
]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_special_tokens_and_chat_template(tok):
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    with_gen = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    without = tok.apply_chat_template(msgs, add_generation_prompt=False, tokenize=False)
    assert without == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert with_gen == without + "<|im_start|>assistant\n"
    ids = chat_prompt_ids(tok, msgs)
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3
    assert tok.decode(ids) == with_gen


def test_chat_template_tools(tok):
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {}}}]
    msgs = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "calc", "arguments": {"e": "2+2"}}}]},
        {"role": "tool", "content": "4"},
    ]
    text = tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=True, tokenize=False)
    assert '<tools>\n{"type": "function"' in text
    assert '<tool_call>\n{"name": "calc", "arguments": {"e": "2+2"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\n4\n</tool_response><|im_end|>\n<|im_start|>assistant\n" in text


def test_decode_roundtrip_and_digits(tok):
    for text in TEXTS:
        assert tok.decode(tok(text)["input_ids"]) == text
    # Qwen2's regex splits numbers into single digits
    assert [t for t in tok.tokenize("2024")] == ["2", "0", "2", "4"]


@pytest.mark.parametrize("with_qwen2_config", [False, True])
def test_save_reload_gives_identical_ids(tmp_path, tok, with_qwen2_config):
    from transformers import AutoTokenizer, Qwen2TokenizerFast

    if with_qwen2_config:
        build_tiny_model(tmp_path, tok, arch="qwen2")
    else:
        build_tiny_tokenizer(save_dir=tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    # even forced through Qwen2's own tokenizer class (the known trap), the ids stay the same
    forced = Qwen2TokenizerFast.from_pretrained(tmp_path)
    for text in TEXTS:
        expected = tok(text, add_special_tokens=False)["input_ids"]
        assert reloaded(text, add_special_tokens=False)["input_ids"] == expected
        assert forced(text, add_special_tokens=False)["input_ids"] == expected
    msgs = [{"role": "user", "content": TEXTS[0]}]
    assert chat_prompt_ids(reloaded, msgs) == chat_prompt_ids(tok, msgs)
    assert (reloaded.pad_token_id, reloaded.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)


@pytest.mark.parametrize("arch", ["qwen2", "llama", "qwen3", "mistral"])
def test_build_tiny_model_loads_and_runs(tmp_path, tok, arch):
    from transformers import AutoModelForCausalLM

    path = build_tiny_model(tmp_path / arch, tok, arch=arch, hidden_size=32, num_layers=1, seed=3)
    config = json.loads((tmp_path / arch / "config.json").read_text())
    assert config["model_type"] == arch and config["vocab_size"] == len(tok)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = torch.tensor([chat_prompt_ids(tok, [{"role": "user", "content": "Hi"}])])
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()
    # same seed, same weights
    again_path = build_tiny_model(tmp_path / "again", tok, arch=arch, hidden_size=32, num_layers=1, seed=3)
    again = AutoModelForCausalLM.from_pretrained(again_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_build_tiny_model_rejects_bad_shape(tmp_path, tok):
    with pytest.raises(ValueError, match="unknown arch"):
        build_tiny_model(tmp_path, tok, arch="gpt9")
    with pytest.raises(ValueError, match="num_heads"):
        build_tiny_model(tmp_path, tok, hidden_size=30, num_heads=4)
