"""The native engine is pinned to transformers: same greedy tokens, log-probs of a teacher-forced forward."""

import pytest
import torch

from verl.models.testing import TINY_MODEL_TYPES, tiny_model
from verl.rollout import build_rollout
from verl.rollout.hf_rollout import HFRollout
from verl.rollout.native import NativeRollout


@pytest.fixture(params=TINY_MODEL_TYPES, scope="module")
def model(request):
    overrides = {"sliding_window": 8} if request.param == "mistral" else {}  # a window the responses cross
    return tiny_model(request.param, seed=3, **overrides)


def teacher_forced_log_probs(model, out, temperature: float) -> torch.Tensor:
    """log p(response token | prefix) from one transformers forward over prompt + response, ``(B, R)``."""
    r = out.batch["responses"].shape[1]
    with torch.no_grad():
        logits = model(input_ids=out.batch["input_ids"], attention_mask=out.batch["attention_mask"],
                       position_ids=out.batch["position_ids"]).logits
    logits = logits[:, -r - 1 : -1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, out.batch["responses"][..., None]).squeeze(-1)


def test_greedy_tokens_equal_transformers(model, make_prompts, rollout_config):
    native = build_rollout(rollout_config(), model, device="cpu")
    hf = build_rollout(rollout_config(name="hf"), model, device="cpu")
    assert isinstance(native, NativeRollout) and isinstance(hf, HFRollout)
    prompts = make_prompts(batch=6, width=12)
    a, b = native.generate_sequences(prompts), hf.generate_sequences(prompts)
    assert a.batch["responses"].shape == (6, 16)
    assert torch.equal(a.batch["responses"], b.batch["responses"])
    assert torch.equal(a.batch["attention_mask"], b.batch["attention_mask"])
    torch.testing.assert_close(a.batch["rollout_log_probs"], b.batch["rollout_log_probs"], atol=1e-4, rtol=0)


def test_sampled_log_probs_match_a_teacher_forced_forward(model, make_prompts, rollout_config):
    native = build_rollout(rollout_config(do_sample=True, temperature=0.8, top_k=50, top_p=0.9), model,
                           device="cpu")
    out = native.generate_sequences(make_prompts(batch=8, width=10, seed=1))
    expected = teacher_forced_log_probs(model, out, temperature=0.8) * out.batch["response_mask"]
    got = out.batch["rollout_log_probs"]
    assert (got < 0).sum() > 0.9 * out.batch["response_mask"].sum()  # real log-probs, not zeros
    assert (got - expected).abs().max().item() <= 1e-4


def test_checkpoint_directory_with_tokenizer(tmp_path, rollout_config):
    """Built from a saved checkpoint (safetensors read directly) and its tokenizer: EOS/pad from the tokenizer,
    no meta_info at all, same greedy output as the hf backend loading the same directory."""
    from verl import DataProto
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer(vocab_size=300)
    path = build_tiny_model(tmp_path / "ckpt", tokenizer=tok, arch="qwen2", seed=4)
    enc = tok(["What is 2 + 3?", "Hello world, hello"], padding=True, return_tensors="pt")
    prompts = DataProto.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    native = build_rollout(rollout_config(), path, tokenizer=tok, device="cpu")
    hf = build_rollout(rollout_config(name="hf"), path, tokenizer=tok, device="cpu")
    assert native.default_eos == (tok.eos_token_id,) and native.default_pad == tok.pad_token_id
    a, b = native.generate_sequences(prompts), hf.generate_sequences(prompts)
    assert torch.equal(a.batch["responses"], b.batch["responses"])
    assert a.meta_info == {} and "position_ids" in a.batch


@pytest.mark.parametrize("model_type,overrides", [
    ("qwen2", {"rope_theta": 1e6}),
    ("llama", {"rope_theta": 1e6, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8}}),
], ids=["qwen2-theta1e6", "llama-theta1e6-llama3"])
def test_greedy_equals_transformers_with_large_theta_and_scaling(model_type, overrides, make_prompts, rollout_config):
    """Qwen2.5-style theta 1e6 (kept in transformers 5's ``rope_parameters``) and Llama-3.1 scaling: a wrong
    theta would still decode, just differently; the tokens pin it."""
    model = tiny_model(model_type, seed=7, **overrides)
    native = build_rollout(rollout_config(response_length=24), model, device="cpu")
    assert native.decoder.config.rope.theta == 1e6
    hf = build_rollout(rollout_config(name="hf", response_length=24), model, device="cpu")
    prompts = make_prompts(batch=6, width=12)
    a, b = native.generate_sequences(prompts), hf.generate_sequences(prompts)
    assert torch.equal(a.batch["responses"], b.batch["responses"])
    torch.testing.assert_close(a.batch["rollout_log_probs"], b.batch["rollout_log_probs"], atol=1e-4, rtol=0)
