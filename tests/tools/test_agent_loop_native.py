"""The agent loop over the real native engine: a turn generated across two engine calls (the second call
continuing from the first call's tokens) equals the same turn generated in one call, token for token."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from agent_helpers import make_batch  # noqa: E402

from verl.rollout import build_rollout
from verl.rollout.agent import AgentLoopRollout
from verl.rollout.config import MultiTurnConfig, RolloutConfig


@pytest.fixture(scope="module")
def engine_and_tokenizer(tokenizer, tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("native") / "m", tokenizer, arch="qwen2", seed=1)

    def make(prompt_length):
        cfg = RolloutConfig(name="native", dtype="float32", do_sample=False, prompt_length=prompt_length,
                            response_length=24, calculate_log_probs=True, ignore_eos=True,
                            multi_turn=MultiTurnConfig(enable=True))
        return cfg, build_rollout(cfg, path, tokenizer, "cpu")

    return make


class FirstCallCapped(AgentLoopRollout):
    """The first engine call is capped at 10 tokens, as the sequence-length cap does when a long multi-turn prefix
    shares a call with a fresh turn."""

    def _call_length(self, prefixes, remaining, longest):
        full = super()._call_length(prefixes, remaining, longest)
        self.calls = getattr(self, "calls", []) + [min(full, 10) if not hasattr(self, "calls") else full]
        return self.calls[-1]


def test_turn_split_over_two_calls_equals_one_call(engine_and_tokenizer, tokenizer):
    questions = ["Q-long " + "the quick brown fox jumps " * 6, "Q-short"]
    cfg, engine = engine_and_tokenizer(prompt_length=128)
    loop = FirstCallCapped(engine, tokenizer, cfg)
    out = loop.generate_sequences(make_batch(tokenizer, questions, prompt_width=128))
    assert loop.calls == [10, 14]  # the turns went on from the first call's tokens
    # the same rows in one call of the same greedy engine
    single = engine.generate_sequences(make_batch(tokenizer, questions, prompt_width=128))
    assert out.batch["responses"].tolist() == single.batch["responses"].tolist()
    assert out.batch["response_mask"].tolist() == [[1] * 24] * 2
    torch.testing.assert_close(out.batch["rollout_log_probs"], single.batch["rollout_log_probs"], atol=1e-4, rtol=1e-4)
    assert out.non_tensor_batch["__num_turns__"].tolist() == [2, 2]
