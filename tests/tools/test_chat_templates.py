"""The real Qwen2.5 and Qwen3 chat templates (saved in templates/, used with a tiny tokenizer): the trajectory
built turn by turn equals the tokenisation of the whole conversation wherever the template is append-only, and the
tokenisation check reports the difference where it is not."""

import copy
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from agent_helpers import ScriptedEngine, make_batch, rollout_config  # noqa: E402

from verl.interactions.gsm8k_interaction import INCORRECT, Gsm8kInteraction
from verl.rollout.agent import AgentLoopRollout
from verl.tools.gsm8k_tool import Gsm8kTool
from verl.tools.schemas import OpenAIFunctionToolSchema

TEMPLATES = Path(__file__).with_name("templates")
GSM8K_SCHEMA = OpenAIFunctionToolSchema.model_validate({"type": "function", "function": {
    "name": "calc_gsm8k_reward", "description": "Check a GSM8K answer",
    "parameters": {"type": "object", "properties": {"answer": {"type": "string", "description": "digits"}},
                   "required": ["answer"]}}})


def with_template(tokenizer, name):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (TEMPLATES / f"{name}.jinja").read_text()
    return tok


def call(answer):
    return "<tool_call>\n" + json.dumps({"name": "calc_gsm8k_reward", "arguments": {"answer": answer}}) + "\n</tool_call>"


def rollout(tok, script, question, tools=(), interactions=None, mode="strict", meta=None, **batch_kwargs):
    cfg = rollout_config(tokenization_sanity_check_mode=mode)
    loop = AgentLoopRollout(ScriptedEngine(tok, script, cfg), tok, cfg, tools=list(tools), interactions=interactions)
    out = loop.generate_sequences(make_batch(tok, [question], meta=meta, **batch_kwargs))
    mask = out.batch["attention_mask"][0].bool()
    return out, loop, out.batch["input_ids"][0][mask].tolist()


def conversation(question, turns):
    msgs = [{"role": "user", "content": question}]
    for role, content in turns:
        msgs.append({"role": role, "content": content})
    return msgs


@pytest.fixture
def check_log(caplog):
    caplog.set_level("WARNING", logger="verl.rollout.agent.loop")
    return caplog


@pytest.mark.parametrize("name", ["qwen2_5", "qwen3"])
def test_tool_conversation_is_append_only(tokenizer, name, check_log):
    tok = with_template(tokenizer, name)
    q = "Q-tools: 40 + 2?"
    think = "<think>\nadd them\n</think>\n\n" if name == "qwen3" else ""  # Qwen3 keeps reasoning after the query
    turns = [think + call("41"), think + call("42"), think + "#### 42"]
    out, loop, ids = rollout(tok, {"Q-tools": turns}, q, tools=[Gsm8kTool({}, GSM8K_SCHEMA)],
                             tools_kwargs={"calc_gsm8k_reward": {"create_kwargs": {"ground_truth": "42"}}})
    msgs = conversation(q, [("assistant", turns[0]), ("tool", "Current parsed answer='41' reward=0.0"),
                            ("assistant", turns[1]), ("tool", "Current parsed answer='42' reward=1.0"),
                            ("assistant", turns[2])])
    full = tok(tok.apply_chat_template(msgs, tools=loop.tool_schemas, tokenize=False), add_special_tokens=False)["input_ids"]
    assert full == ids + tok("\n", add_special_tokens=False)["input_ids"]  # token for token, then the final newline
    assert out.non_tensor_batch["tokenization_mismatch"][0] == 0 and "differ" not in check_log.text
    assert out.non_tensor_batch["reward_scores"][0] == {"calc_gsm8k_reward": 1.0}


def test_qwen2_5_interaction_is_append_only(tokenizer, check_log):
    tok = with_template(tokenizer, "qwen2_5")
    q = "Q-user: 40 + 2?"
    turns = ["#### 41", "#### 42"]
    out, _, ids = rollout(tok, {"Q-user": turns}, q, interactions={"gsm8k": Gsm8kInteraction({"name": "gsm8k"})},
                          interaction_kwargs={"name": "gsm8k", "ground_truth": "42"})
    msgs = conversation(q, [("assistant", turns[0]), ("user", INCORRECT), ("assistant", turns[1])])
    full = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    assert full[: len(ids)] == ids and out.non_tensor_batch["tokenization_mismatch"][0] == 0


def test_qwen3_drops_past_reasoning_at_a_new_user_turn_and_the_check_reports_it(tokenizer, check_log):
    tok = with_template(tokenizer, "qwen3")
    q = "Q-think: 40 + 2?"
    turns = ["<think>\nguess\n</think>\n\n#### 41", "<think>\nadd\n</think>\n\n#### 42"]
    out, _, ids = rollout(tok, {"Q-think": turns}, q, interactions={"gsm8k": Gsm8kInteraction({"name": "gsm8k"})},
                          interaction_kwargs={"name": "gsm8k", "ground_truth": "42"})
    assert out.non_tensor_batch["tokenization_mismatch"][0] == 1
    assert "(model): built" in check_log.text and "1 trajectories differ" in check_log.text
    # what training sees is what the model was conditioned on: the first turn's reasoning is still there
    assert "guess" in tok.decode(ids)


def test_qwen3_without_thinking_reports_the_inserted_empty_reasoning(tokenizer, check_log):
    tok = with_template(tokenizer, "qwen3")
    q = "Q-nothink: 40 + 2?"
    turns = [call("42"), "#### 42"]
    out, _, ids = rollout(tok, {"Q-nothink": turns}, q, tools=[Gsm8kTool({}, GSM8K_SCHEMA)],
                          meta={"apply_chat_template_kwargs": {"enable_thinking": False}})
    text = tok.decode(ids)
    assert text.count("<think>\n\n</think>\n\n") == 2  # each generation prompt as the template writes it
    assert out.non_tensor_batch["tokenization_mismatch"][0] == 1 and "(prompt): built" in check_log.text


def test_disable_mode_skips_the_check(tokenizer):
    tok = with_template(tokenizer, "qwen3")
    out, _, _ = rollout(tok, {"Q-off": [call("42"), "#### 42"]}, "Q-off", tools=[Gsm8kTool({}, GSM8K_SCHEMA)],
                        mode="disable", meta={"apply_chat_template_kwargs": {"enable_thinking": False}})
    assert out.non_tensor_batch["tokenization_mismatch"][0] == 0
