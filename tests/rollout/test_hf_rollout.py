"""The hf backend (transformers.generate): the contract, ignore_eos, log-probs, weight updates."""

import pytest
import torch

from verl.models.testing import tiny_model
from verl.rollout import build_rollout


def test_ignore_eos_generates_every_token_and_log_probs_are_real(qwen2_model, make_prompts, rollout_config):
    rollout = build_rollout(rollout_config(name="hf", do_sample=True, ignore_eos=True, temperature=0.9),
                            qwen2_model, device="cpu")
    prompts = make_prompts(seed=20)
    prompts.meta_info["eos_token_id"] = list(range(3, 200))  # nearly every token is an EOS: ignored anyway
    out = rollout.generate_sequences(prompts)
    assert out.batch["response_mask"].all()
    assert (out.batch["rollout_log_probs"] < 0).all()


def test_chunks_of_max_num_seqs_give_the_same_greedy_output(qwen2_model, make_prompts, rollout_config):
    prompts = make_prompts(seed=21)
    whole = build_rollout(rollout_config(name="hf"), qwen2_model, device="cpu").generate_sequences(prompts)
    chunked = build_rollout(rollout_config(name="hf", max_num_seqs=4), qwen2_model,
                            device="cpu").generate_sequences(prompts)
    assert torch.equal(whole.batch["responses"], chunked.batch["responses"])


def test_update_weights_by_hf_name(make_prompts, rollout_config):
    a, b = tiny_model("llama", seed=1), tiny_model("llama", seed=2)
    rollout = build_rollout(rollout_config(name="hf"), a, device="cpu")
    rollout.update_weights(b.state_dict().items())
    prompts = make_prompts(seed=22)
    expected = build_rollout(rollout_config(name="hf"), b, device="cpu").generate_sequences(prompts)
    assert torch.equal(rollout.generate_sequences(prompts).batch["responses"], expected.batch["responses"])
    with pytest.raises(KeyError, match="did you mean 'model.norm.weight'"):
        rollout.update_weights([("model.norms.weight", torch.zeros(64))])
