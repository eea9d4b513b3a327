"""The native decoder reproduces transformers' logits, through its KV cache too, and loads weights by HF name."""

import pytest
import torch

from verl.models import DecoderConfig, LlamaDecoder, UnsupportedModelError
from verl.models.testing import tiny_config, tiny_model
from verl.rollout.native.kv_cache import KVCache

VARIANTS = {
    "llama": ("llama", {}),
    "llama-bias-llama3rope": ("llama", {"attention_bias": True, "mlp_bias": True, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}}),
    "qwen2-tied-qkv-bias": ("qwen2", {}),
    "qwen2-sliding-layer": ("qwen2", {"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1}),
    "qwen3-qknorm": ("qwen3", {}),
    "qwen3-bias-untied": ("qwen3", {"attention_bias": True, "tie_word_embeddings": False}),
    "mistral-window": ("mistral", {"sliding_window": 6}),
    "llama-mha-yarn": ("llama", {"num_key_value_heads": 4, "rope_scaling": {"rope_type": "yarn", "factor": 2.0}}),
}


def decoder_for(model, dtype=torch.float32, share=True):
    dec = LlamaDecoder(DecoderConfig.from_hf(model.config), "cpu", dtype)
    dec.load_weights(model.state_dict().items(), share=share)
    dec.check_complete()
    dec.ensure_rope(64)
    return dec


@pytest.fixture(params=sorted(VARIANTS), scope="module")
def model(request):
    model_type, overrides = VARIANTS[request.param]
    return tiny_model(model_type, seed=1, **overrides)


def test_config_reads_architecture_features(model):
    cfg = DecoderConfig.from_hf(model.config)
    hf = model.config
    assert cfg.qkv_bias == (hf.model_type == "qwen2" or bool(getattr(hf, "attention_bias", False)))
    assert cfg.qk_norm == (hf.model_type == "qwen3")
    assert cfg.tie_word_embeddings == hf.tie_word_embeddings
    if hf.model_type == "mistral":
        assert cfg.sliding_windows == (6, 6)
    if getattr(hf, "use_sliding_window", False):
        assert cfg.sliding_windows == (None, 5)  # layers >= max_window_layers slide


@torch.no_grad()
def test_forward_matches_transformers(model):
    dec = decoder_for(model)
    ids = torch.randint(3, 256, (2, 20), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(20).expand(2, 20)
    torch.testing.assert_close(dec.forward(ids, positions), model(ids).logits, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_prefill_then_decode_through_cache_matches_full_forward(model):
    """Two prompts of different lengths right-padded into one prefill, then 8 decode steps, each logit row
    equal to the full forward's at that position (also past the sliding window)."""
    dec = decoder_for(model)
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(3, 256, (n,), generator=g) for n in (14, 17)]
    ref = [model(s[None]).logits[0] for s in seqs]
    cfg = dec.config
    cache = KVCache.allocate(cfg, num_slots=3, max_len=32, device="cpu", dtype=torch.float32)
    prompt_lens = [6, 9]
    ids = torch.zeros(2, 9, dtype=torch.long)
    for i, n in enumerate(prompt_lens):
        ids[i, :n] = seqs[i][:n]
    positions = torch.arange(9).expand(2, 9)
    # slots 2 and 0 take prompts 0 and 1
    logits = dec.prefill(ids, positions, torch.tensor([5, 8]), cache.k, cache.v, torch.tensor([2, 0]),
                         torch.tensor([0, 1]))
    torch.testing.assert_close(logits[0], ref[0][5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1], ref[1][8], rtol=1e-5, atol=1e-5)
    order = {2: 0, 0: 1}  # slot -> sequence
    for step in range(8):
        tokens = torch.zeros(3, dtype=torch.long)
        write = torch.zeros(3, dtype=torch.long)
        for slot, seq in order.items():
            tokens[slot] = seqs[seq][prompt_lens[seq] + step]
            write[slot] = prompt_lens[seq] + step
        out = dec.decode(tokens, write.clone(), write, cache.k, cache.v)  # (3, V); slot 1 is idle
        for slot, seq in order.items():
            torch.testing.assert_close(out[slot], ref[seq][prompt_lens[seq] + step], rtol=1e-5, atol=1e-5)


def test_unsupported_architecture_is_named():
    from transformers import GPT2Config

    with pytest.raises(UnsupportedModelError, match="gpt2"):
        DecoderConfig.from_hf(GPT2Config())


def test_weights_are_shared_when_dtype_matches_and_copied_otherwise():
    model = tiny_model("llama", tie_word_embeddings=True)
    state = model.state_dict()
    shared = decoder_for(model)
    assert shared.globals["embed"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()
    assert shared.globals["lm_head"] is shared.globals["embed"]  # tied, though lm_head was in the state dict
    assert shared.layers[0]["o_weight"].data_ptr() == state["model.layers.0.self_attn.o_proj.weight"].data_ptr()
    q = state["model.layers.0.self_attn.q_proj.weight"]
    torch.testing.assert_close(shared.layers[0]["qkv_weight"][: q.shape[0]], q)  # fused copy
    half = LlamaDecoder(shared.config, "cpu", torch.bfloat16)
    half.load_weights(state.items())
    assert half.globals["embed"].dtype == torch.bfloat16
    assert half.globals["embed"].data_ptr() != state["model.embed_tokens.weight"].data_ptr()


def test_update_never_writes_into_the_source_model():
    a, b = tiny_model("qwen2", seed=1), tiny_model("qwen2", seed=2)
    a_before = {k: v.clone() for k, v in a.state_dict().items()}
    dec = decoder_for(a)
    version = dec.version
    dec.load_weights(b.state_dict().items())
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, a_before[k], rtol=0, atol=0)  # copy-on-write, the actor is untouched
    assert dec.version > version  # shared slots were rebound: holders of device pointers must re-capture
    ids = torch.randint(3, 256, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(dec.forward(ids, torch.arange(10)[None]), b(ids).logits, rtol=1e-5, atol=1e-5)
    # owned now: a further update copies in place and keeps pointers (and the version)
    ptr, version = dec.globals["embed"].data_ptr(), dec.version
    dec.load_weights(a.state_dict().items())
    assert dec.globals["embed"].data_ptr() == ptr and dec.version == version


def test_missing_unknown_and_unexpected_weights_raise():
    model = tiny_model("llama")
    state = dict(model.state_dict())
    dec = LlamaDecoder(DecoderConfig.from_hf(model.config), "cpu", torch.float32)
    dec.load_weights((k, v) for k, v in state.items() if "layers.1.mlp.down_proj" not in k)
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.down_proj\.weight"):
        dec.check_complete()
    with pytest.raises(KeyError, match="not a weight of this llama decoder"):
        dec.load_weights([("model.layers.7.self_attn.q_proj.weight", state["model.layers.0.self_attn.q_proj.weight"])])
    with pytest.raises(ValueError, match="attention_bias"):
        dec.load_weights([("model.layers.0.self_attn.q_proj.bias", torch.zeros(64))])
    with pytest.raises(ValueError, match="shape"):
        dec.load_weights([("model.norm.weight", torch.zeros(3))])
    # wrapper prefixes from FSDP / torch.compile are understood; rotary buffers are ignored
    loaded = dec.load_weights([("_orig_mod.model.norm.weight", state["model.norm.weight"]),
                               ("model.rotary_emb.inv_freq", torch.zeros(8))])
    assert loaded == ["_orig_mod.model.norm.weight"]


def test_tiny_config_rejects_unknown_type():
    with pytest.raises(ValueError, match="tiny_config supports"):
        tiny_config("gpt2")
