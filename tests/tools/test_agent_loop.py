"""The agent loop's mechanics with a scripted policy: turns, token-in/token-out masks, batching across
conversations, concurrent tools, failures, budgets, truncation, interactions, rewards reaching the reward function."""

import asyncio
import json
import os
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from agent_helpers import ScriptedEngine, make_batch, rollout_config  # noqa: E402

from verl.interactions.gsm8k_interaction import INCORRECT, Gsm8kInteraction
from verl.rollout.agent import AgentLoopRollout, multi_turn_metrics
from verl.rollout.agent.template import TemplateTokens
from verl.tools.base_tool import BaseTool
from verl.tools.gsm8k_tool import Gsm8kTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse


def schema(name, **props):
    return OpenAIFunctionToolSchema.model_validate({"type": "function", "function": {
        "name": name, "description": f"the {name} tool",
        "parameters": {"type": "object", "properties": {k: {"type": v} for k, v in props.items()},
                       "required": list(props)}}})


class AddTool(BaseTool):
    """Adds a and b; ``delay`` seconds of (async) work per call; tracks how many calls overlap."""

    def __init__(self, delay=0.0, timeout=None):
        super().__init__({"timeout": timeout} if timeout else {}, schema("add", a="integer", b="integer"))
        self.delay, self.inflight, self.max_inflight, self.created, self.released = delay, 0, 0, [], []

    async def create(self, instance_id=None, **kwargs):
        self.created.append(kwargs.get("create_kwargs"))
        return await super().create(instance_id)

    async def execute(self, instance_id, parameters, **kwargs):
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(self.delay)
            return ToolResponse(text=str(parameters["a"] + parameters["b"])), 0.5, {}
        finally:
            self.inflight -= 1

    async def calc_reward(self, instance_id, **kwargs):
        return 0.25

    async def release(self, instance_id, **kwargs):
        self.released.append(instance_id)


class BrokenTool(BaseTool):
    def __init__(self):
        super().__init__({}, schema("broken"))

    async def execute(self, instance_id, parameters, **kwargs):
        raise RuntimeError("disk on fire")


def call(name, **args):
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


def run(tokenizer, script, questions, tools=(), interactions=None, meta=None, batch_kwargs=None, **multi_turn):
    cfg = rollout_config(**multi_turn)
    engine = ScriptedEngine(tokenizer, script, cfg)
    loop = AgentLoopRollout(engine, tokenizer, cfg, tools=list(tools), interactions=interactions)
    out = loop.generate_sequences(make_batch(tokenizer, questions, meta=meta, **(batch_kwargs or {})))
    return out, engine, loop


def valid(out, i, key="responses"):
    n = int(out.batch["attention_mask"][i, out.batch["prompts"].shape[1]:].sum())
    return out.batch[key][i, :n].tolist()


def test_tool_turn_is_token_in_token_out_with_mask_exactly_on_model_tokens(tokenizer):
    q = "What is 12 plus 30?"
    first, final = call("add", a=12, b=30), "The answer is 42."
    tool = AddTool()
    out, engine, loop = run(tokenizer, {q: [first, final]}, [q], tools=[tool])
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id
    template = TemplateTokens(tokenizer, loop.tool_schemas, [eos])
    inserted = template.insert_ids([{"role": "tool", "content": "42"}])
    assert tokenizer.decode(inserted) == "\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    want = enc(first) + [eos] + inserted + enc(final) + [eos]
    assert valid(out, 0) == want  # the model's tokens as emitted; the template's tokens for the tool message
    assert valid(out, 0, "response_mask") == [1] * (len(enc(first)) + 1) + [0] * len(inserted) + [1] * (len(enc(final)) + 1)
    mask = out.batch["response_mask"][0].bool()
    assert (out.batch["rollout_log_probs"][0][~mask] == 0).all() and (out.batch["rollout_log_probs"][0][mask] < 0).all()
    # the prompt lists the tools; prompt + response is the whole conversation as the template renders it
    p = out.batch["prompts"].shape[1]
    ids = out.batch["input_ids"][0][out.batch["attention_mask"][0].bool()].tolist()
    conversation = [{"role": "user", "content": q}, {"role": "assistant", "content": first},
                    {"role": "tool", "content": "42"}, {"role": "assistant", "content": final}]
    rendered = tokenizer.apply_chat_template(conversation, tools=loop.tool_schemas, tokenize=False)
    assert tokenizer.decode(ids) + "\n" == rendered
    assert out.batch["position_ids"][0, p - 1:].tolist()[:3] == [int(out.batch["attention_mask"][0, :p].sum()) - 1 + k for k in range(3)]
    nt = out.non_tensor_batch
    assert nt["__num_turns__"][0] == 4 and nt["tool_call_counts"][0] == 1 and nt["tool_failure_counts"][0] == 0
    assert nt["reward_scores"][0] == {"add": 0.25} and nt["tool_rewards"][0] == [0.5] and nt["stop_reason"][0] == "stop"
    assert nt["tokenization_mismatch"][0] == 0 and len(tool.released) == 1


def test_every_engine_call_carries_all_ready_conversations(tokenizer):
    script = {"QA": [call("add", a=1, b=2), call("add", a=3, b=3), "done A"],
              "QB": ["done B"],
              "QC": [call("add", a=5, b=5), "done C"]}
    out, engine, _ = run(tokenizer, script, ["QA", "QB", "QC"], tools=[AddTool()])
    assert [sorted(c) for c in engine.calls] == [[("QA", 0), ("QB", 0), ("QC", 0)], [("QA", 1), ("QC", 1)], [("QA", 2)]]
    assert out.non_tensor_batch["__num_turns__"].tolist() == [6, 2, 4]
    assert multi_turn_metrics(out.non_tensor_batch)["tool_call_counts/mean"] == pytest.approx(1.0)


def test_tool_calls_of_all_conversations_run_concurrently(tokenizer):
    tool = AddTool(delay=0.05)
    script = {f"Q{i}": [call("add", a=i, b=1) + call("add", a=i, b=2), "ok"] for i in range(4)}
    out, _, _ = run(tokenizer, script, list(script), tools=[tool], max_parallel_calls=2)
    assert tool.max_inflight == 8  # 4 conversations x 2 calls, all in flight together
    assert out.non_tensor_batch["tool_call_counts"].tolist() == [2] * 4
    assert len(tool.created) == 4  # one instance per trajectory, not per call


class TimedEngine(ScriptedEngine):
    """Takes ``seconds`` per engine call and records when each ran."""

    def __init__(self, *args, seconds, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds, self.intervals = seconds, []

    def _generate(self, prompts, request):
        start = time.perf_counter()
        time.sleep(self.seconds)
        out = super()._generate(prompts, request)
        self.intervals.append((start, time.perf_counter()))
        return out


class SlowTool(AddTool):
    def __init__(self, delay):
        super().__init__(delay=delay)
        self.tool_schema, self.name = schema("slow", a="integer", b="integer"), "slow"
        self.intervals = []

    async def execute(self, instance_id, parameters, **kwargs):
        start = time.perf_counter()
        try:
            return await super().execute(instance_id, parameters, **kwargs)
        finally:
            self.intervals.append((start, time.perf_counter()))


def test_generation_goes_on_while_a_slow_tool_runs(tokenizer):
    """QA's tool takes 1 s; meanwhile QB's fast tool turns re-enter generation (the engine runs in this thread, the
    tools on the loop's thread): the whole rollout takes less than the engine time plus the slow tool's time, and
    the trajectories are the same as when every tool is fast."""
    script = {"QA": [call("slow", a=1, b=2), "done A"],
              "QB": [call("add", a=1, b=1), call("add", a=2, b=2), call("add", a=3, b=3), "done B"]}
    cfg = rollout_config()
    outs = []
    for delay in (1.0, 0.0):
        engine, slow = TimedEngine(tokenizer, script, cfg, seconds=0.2), SlowTool(delay)
        loop = AgentLoopRollout(engine, tokenizer, cfg, tools=[slow, AddTool()])
        start = time.perf_counter()
        outs.append(loop.generate_sequences(make_batch(tokenizer, ["QA", "QB"])))
        elapsed = time.perf_counter() - start
        loop.close()
        if delay:
            (tool_start, tool_end), = slow.intervals
            during = [rows for rows, (a, b) in zip(loop.engine_calls, engine.intervals) if a > tool_start and b < tool_end]
            assert during and all(rows == [1] for rows in during), (loop.engine_calls, engine.intervals, slow.intervals)
            assert loop.engine_calls[0] == [0, 1] and loop.engine_calls[-1] == [0]  # QA re-enters after its tool
            busy = sum(b - a for a, b in engine.intervals)
            assert elapsed < busy + (tool_end - tool_start), (elapsed, busy)
    for key in ("responses", "response_mask", "attention_mask"):
        assert torch.equal(outs[0].batch[key], outs[1].batch[key]), key
    assert outs[0].non_tensor_batch["__num_turns__"].tolist() == [4, 8]


def test_failures_become_tool_messages_and_are_counted(tokenizer):
    bad = [
        "<tool_call>\n{not json}\n</tool_call>",
        call("nosuch", x=1),
        call("broken"),
        call("add", a=1, b=1),  # times out
        call("add", a=1, b=1) + call("add", a=2, b=2),  # a timeout, and the second is over max_parallel_calls=1
        "<tool_call>\n{\"name\": \"add\"",  # never closed
    ]
    script = {f"F{i}": [text, "recovered"] for i, text in enumerate(bad)}
    slow = AddTool(delay=5.0, timeout=0.05)
    out, engine, loop = run(tokenizer, script, list(script), tools=[slow, BrokenTool()])
    for i, needle in enumerate(["not valid JSON", "no tool named 'nosuch'", "RuntimeError: disk on fire",
                                "did not finish within 0.05 s", "at most 1 tool call(s) per turn", "never closed"]):
        text = tokenizer.decode(valid(out, i))
        assert needle in text, (i, text)
        assert text.endswith("recovered<|im_end|>")  # the conversation went on
    assert out.non_tensor_batch["tool_failure_counts"].tolist() == [1, 1, 1, 1, 2, 1]
    m = multi_turn_metrics(out.non_tensor_batch)
    assert m["multi_turn/tool_failures"] == 7 and m["multi_turn/tool_failure_rate"] == 1.0


def test_budget_and_turn_limits(tokenizer):
    q = "What is 2 plus 2?"
    script = {q: [call("add", a=2, b=2), "four", "never"]}
    # max_assistant_turns=1: the call is never run
    out, _, _ = run(tokenizer, script, [q], tools=[AddTool()], max_assistant_turns=1)
    assert out.non_tensor_batch["stop_reason"][0] == "max_assistant_turns"
    assert out.non_tensor_batch["tool_call_counts"][0] == 0 and all(valid(out, 0, "response_mask"))
    # max_user_turns=1: one tool turn, then the second model turn ends it
    out, _, _ = run(tokenizer, {q: [call("add", a=2, b=2), call("add", a=2, b=2), "x"]}, [q], tools=[AddTool()],
                    max_user_turns=1)
    assert out.non_tensor_batch["stop_reason"][0] == "max_user_turns" and out.non_tensor_batch["__num_turns__"][0] == 4
    # a response budget too small for the tool message: stop after the model's turn, never on inserted tokens
    n_first = len(tokenizer(call("add", a=2, b=2), add_special_tokens=False)["input_ids"]) + 1
    cfg = rollout_config()
    cfg.response_length = n_first + 5
    engine = ScriptedEngine(tokenizer, script, cfg)
    out = AgentLoopRollout(engine, tokenizer, cfg, tools=[AddTool()]).generate_sequences(make_batch(tokenizer, [q]))
    assert out.batch["responses"].shape[1] == n_first + 5
    assert valid(out, 0, "response_mask") == [1] * n_first and out.non_tensor_batch["stop_reason"][0] == "length"
    # a model turn longer than the budget is cut at the budget
    cfg.response_length = 4
    out = AgentLoopRollout(ScriptedEngine(tokenizer, script, cfg), tokenizer, cfg, tools=[AddTool()]).generate_sequences(
        make_batch(tokenizer, [q]))
    assert valid(out, 0, "response_mask") == [1] * 4 and out.non_tensor_batch["stop_reason"][0] == "length"


def test_a_turn_cut_by_one_call_continues_in_the_next(tokenizer):
    """Prefixes of different lengths share a call whose length is capped by the longest one (max_model_len)."""
    long_q, short_q = "Q-long " + "word " * 30, "Q-short"
    script = {"Q-long": ["ok"], "Q-short": ["a fairly long answer that needs many tokens to write out"]}
    cfg = rollout_config()
    cfg.response_length = 40
    engine = ScriptedEngine(tokenizer, script, cfg)
    batch = make_batch(tokenizer, [long_q, short_q])
    out = AgentLoopRollout(engine, tokenizer, cfg).generate_sequences(batch)
    want = tokenizer(script["Q-short"][0], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert valid(out, 1) == want[:40]
    assert out.non_tensor_batch["__num_turns__"].tolist() == [2, 2]


def test_tool_response_truncation_sides(tokenizer):
    class Long(BaseTool):
        def __init__(self):
            super().__init__({}, schema("long"))

        async def execute(self, instance_id, parameters, **kwargs):
            return ToolResponse(text="abcdefghijklmnopqrstuvwxyz"), 0.0, {}

    q = "Q-trunc"
    for side, kept in (("left", "abcdefghij...(truncated)"), ("right", "(truncated)...qrstuvwxyz"),
                       ("middle", "abcde...(truncated)...vwxyz")):
        out, _, _ = run(tokenizer, {q: [call("long"), "ok"]}, [q], tools=[Long()], max_tool_response_length=10,
                        tool_response_truncate_side=side)
        assert f"<tool_response>\n{kept}\n</tool_response>" in tokenizer.decode(valid(out, 0))


def test_gsm8k_interaction_turns_scores_and_user_tokens_masked(tokenizer):
    q = "Q-interact: what is 40 + 2?"
    script = {"Q-interact": ["I think #### 41", "Sorry: #### 42", "never reached"]}
    interaction = Gsm8kInteraction({"name": "gsm8k"})
    out, _, _ = run(tokenizer, script, [q], interactions={"gsm8k": interaction},
                    batch_kwargs={"interaction_kwargs": {"name": "gsm8k", "ground_truth": "42"}})
    nt = out.non_tensor_batch
    assert nt["turn_scores"][0] == [0.0, 1.0] and nt["stop_reason"][0] == "interaction_done"
    assert nt["reward_scores"][0] == {"user_turn_rewards": [0.0, 1.0]} and nt["__num_turns__"][0] == 4
    text = tokenizer.decode(valid(out, 0))
    assert INCORRECT in text and text.endswith("Sorry: #### 42<|im_end|>")
    model_text = tokenizer.decode([t for t, m in zip(valid(out, 0), valid(out, 0, "response_mask")) if m])
    assert model_text == "I think #### 41<|im_end|>Sorry: #### 42<|im_end|>"
    assert interaction._state == {}  # finalised


def test_a_failing_interaction_ends_its_trajectory_not_the_step(tokenizer):
    class Broken(Gsm8kInteraction):
        async def generate_response(self, instance_id, messages, **kwargs):
            raise ConnectionError("user simulator down")

    out, _, _ = run(tokenizer, {"Q-broken": ["#### 1"], "Q-fine": ["#### 2"]}, ["Q-broken", "Q-fine"],
                    interactions={"gsm8k": Broken({"name": "gsm8k"})},
                    batch_kwargs={"interaction_kwargs": {"name": "gsm8k", "ground_truth": "2"}})
    assert out.non_tensor_batch["stop_reason"].tolist() == ["interaction_error", "interaction_error"]
    assert all(valid(out, 0, "response_mask"))


def test_gsm8k_tool_reward_and_turns_reach_the_reward_function(tokenizer):
    from verl.reward.base import decode_batch

    tool = Gsm8kTool({"type": "native"}, schema("calc_gsm8k_reward", answer="string"))
    q = "Q-gsm8k"
    out, _, _ = run(tokenizer, {q: [call("calc_gsm8k_reward", answer="41"), call("calc_gsm8k_reward", answer="42"),
                                    "#### 42"]}, [q], tools=[tool],
                    batch_kwargs={"tools_kwargs": {"calc_gsm8k_reward": {"create_kwargs": {"ground_truth": "42"}}}})
    nt = out.non_tensor_batch
    assert nt["tool_rewards"][0] == [-0.05, 0.0] and nt["reward_scores"][0] == {"calc_gsm8k_reward": 1.0}
    assert "Current parsed answer='42' reward=1.0" in tokenizer.decode(valid(out, 0))
    out.non_tensor_batch.update(data_source=["openai/gsm8k"], reward_model=[{"ground_truth": "42"}],
                                extra_info=[{"index": 3}])
    decoded = decode_batch(out, tokenizer)
    assert decoded.extra_infos[0] == {"index": 3, "num_turns": 6, "rollout_reward_scores": {"calc_gsm8k_reward": 1.0}}


def test_single_turn_rows_and_batches(tokenizer):
    script = {"Q-one": ["plain answer"], "Q-two": [call("add", a=1, b=1), "2"]}
    cfg = rollout_config()
    engine = ScriptedEngine(tokenizer, script, cfg)
    loop = AgentLoopRollout(engine, tokenizer, cfg, tools=[AddTool()])
    plain = make_batch(tokenizer, ["Q-one", "Q-two"])
    del plain.non_tensor_batch["agent_name"]  # no column: verl's default single_turn_agent, the engine as is
    direct = engine.generate_sequences(plain)
    engine.progress.clear()  # the script starts over
    out = loop.generate_sequences(plain)
    assert torch.equal(out.batch["responses"], direct.batch["responses"]) and "__num_turns__" not in out.non_tensor_batch
    mixed = make_batch(tokenizer, ["Q-one", "Q-two"], agent_name=["single_turn_agent", "tool_agent"])
    engine.progress.clear()
    out = loop.generate_sequences(mixed)
    assert torch.equal(out.batch["prompts"][0], mixed.batch["input_ids"][0])  # the dataset's prompt, no tool list
    assert out.non_tensor_batch["__num_turns__"].tolist() == [2, 4]
    with pytest.raises(ValueError, match="not an agent loop"):
        loop.generate_sequences(make_batch(tokenizer, ["Q-one"], agent_name="react_agent"))
    no_raw = make_batch(tokenizer, ["Q-two"])
    del no_raw.non_tensor_batch["raw_prompt"]
    with pytest.raises(KeyError, match="data.return_raw_chat=true"):
        loop.generate_sequences(no_raw)


def test_python_tool_runs_in_the_sandbox(tokenizer):
    from verl.tools.python_tool import PythonTool

    tool = PythonTool({"timeout_s": 5}, schema("python", code="string"))
    q = "Q-python"
    out, _, _ = run(tokenizer, {q: [call("python", code="print(6 * 7)"), call("python", code="while True: pass"),
                                    "done"]}, [q], tools=[tool])
    text = tokenizer.decode(valid(out, 0))
    assert "<tool_response>\n42\n\n</tool_response>" in text or "<tool_response>\n42\n</tool_response>" in text
    assert "[timeout]" in text and out.non_tensor_batch["tool_call_counts"][0] == 2
