"""Native engine behaviour: continuous batching, prefix sharing, EOS and the output contract, weight updates,
sleep/wake, seeds, meta_info handling, fallback."""

import logging

import numpy as np
import pytest
import torch

from verl.models.testing import tiny_model
from verl.rollout import build_rollout
from verl.rollout.hf_rollout import HFRollout


def frequent_token(rollout, prompts) -> int:
    """A token the greedy model emits early in row 0, used as EOS so sequences stop at different steps."""
    probe = prompts.select()
    probe.meta_info = dict(prompts.meta_info, ignore_eos=True)
    return int(rollout.generate_sequences(probe).batch["responses"][0, 3])


@pytest.fixture
def eos_prompts(qwen2_model, make_prompts, rollout_config):
    prompts = make_prompts(batch=10, width=12, seed=5)
    eos = frequent_token(build_rollout(rollout_config(), qwen2_model, device="cpu"), prompts)
    prompts.meta_info["eos_token_id"] = [eos, 1]
    return prompts


def test_output_contract_with_eos(qwen2_model, eos_prompts, rollout_config):
    prompts = eos_prompts
    prompts.non_tensor_batch["uid"] = np.array([f"u{i}" for i in range(10)], dtype=object)
    prompts.meta_info["global_steps"] = 3
    out = build_rollout(rollout_config(), qwen2_model, device="cpu").generate_sequences(prompts)
    b, p, r = 10, 12, 16
    eos_ids = prompts.meta_info["eos_token_id"]
    resp, mask = out.batch["responses"], out.batch["response_mask"]
    assert resp.shape == (b, r) and resp.dtype == torch.long
    assert torch.equal(out.batch["prompts"], prompts.batch["input_ids"])
    assert torch.equal(out.batch["input_ids"], torch.cat([prompts.batch["input_ids"], resp], -1))
    assert torch.equal(out.batch["attention_mask"], torch.cat([prompts.batch["attention_mask"], mask], -1))
    lengths = mask.sum(-1)
    assert (lengths < r).sum() >= 1 and (lengths >= 1).all()  # some rows stopped at EOS
    for i in range(b):
        n = int(lengths[i])
        assert mask[i, :n].all() and not mask[i, n:].any()  # 1 up to and including EOS, 0 after
        if n < r:
            assert int(resp[i, n - 1]) in eos_ids  # the last real token is an EOS...
        assert not any(int(t) in eos_ids for t in resp[i, : n - 1])  # ...and the first one
        assert (resp[i, n:] == 0).all()  # right-padded with the pad id
    last = prompts.batch["position_ids"][:, -1:]
    assert torch.equal(out.batch["position_ids"][:, p:], last + torch.arange(1, r + 1))
    assert (out.batch["rollout_log_probs"][mask == 0] == 0).all()
    assert (out.batch["rollout_log_probs"][mask == 1] < 0).all()
    assert list(out.non_tensor_batch["uid"]) == [f"u{i}" for i in range(10)]
    assert out.meta_info["global_steps"] == 3


@pytest.mark.parametrize("slots", [1, 3])
def test_continuous_batching_with_few_slots_equals_one_batch(qwen2_model, eos_prompts, rollout_config, slots):
    """With 1 slot the sequences run one at a time; with 3, finished slots are refilled mid-run."""
    full = build_rollout(rollout_config(), qwen2_model, device="cpu").generate_sequences(eos_prompts)
    few = build_rollout(rollout_config(max_num_seqs=slots, finished_check_interval=2), qwen2_model,
                        device="cpu").generate_sequences(eos_prompts)
    assert torch.equal(few.batch["responses"], full.batch["responses"])
    assert torch.equal(few.batch["response_mask"], full.batch["response_mask"])
    torch.testing.assert_close(few.batch["rollout_log_probs"], full.batch["rollout_log_probs"], atol=1e-5, rtol=0)


def test_prefix_sharing_prefills_once_and_changes_nothing(qwen2_model, make_prompts, rollout_config, monkeypatch):
    prompts = make_prompts(batch=4, width=10, seed=6).repeat(4, interleave=True)  # 4 prompts x n=4
    prompts.meta_info["eos_token_id"] = 2
    results, prefilled_rows = {}, {}
    for share in (True, False):
        rollout = build_rollout(rollout_config(enable_prefix_sharing=share, do_sample=True, n=4), qwen2_model,
                                device="cpu")
        rows = []
        original = rollout.runner.prefill
        monkeypatch.setattr(rollout.runner, "prefill", lambda ids, *a: rows.append(ids.shape[0]) or original(ids, *a))
        results[share] = rollout.generate_sequences(prompts)
        prefilled_rows[share] = sum(rows)
    assert prefilled_rows == {True: 4, False: 16}
    a, b = results[True], results[False]
    # the samples of one prompt share a prefill but are drawn independently
    assert not torch.equal(a.batch["responses"][0], a.batch["responses"][1])
    assert torch.equal(a.batch["responses"], b.batch["responses"])
    torch.testing.assert_close(a.batch["rollout_log_probs"], b.batch["rollout_log_probs"], atol=1e-5, rtol=0)


def test_update_weights_switches_to_the_other_model(make_prompts, rollout_config):
    a, b = tiny_model("qwen2", seed=10), tiny_model("qwen2", seed=11)
    a_before = {k: v.clone() for k, v in a.state_dict().items()}
    rollout = build_rollout(rollout_config(), a, device="cpu")
    prompts = make_prompts(seed=7)
    before = rollout.generate_sequences(prompts)
    rollout.update_weights((k, v) for k, v in b.state_dict().items() if k != "lm_head.weight")  # tied: absent
    after = rollout.generate_sequences(prompts)
    reference = build_rollout(rollout_config(name="hf"), b, device="cpu").generate_sequences(prompts)
    assert torch.equal(after.batch["responses"], reference.batch["responses"])
    assert not torch.equal(after.batch["responses"], before.batch["responses"])
    assert all(torch.equal(v, a_before[k]) for k, v in a.state_dict().items())  # the source model is intact
    with pytest.raises(KeyError, match="not a weight"):
        rollout.update_weights([("model.layers.0.attn.weight", torch.zeros(1))])


def test_sleep_frees_the_cache_and_wake_up_restores(qwen2_model, make_prompts, rollout_config):
    rollout = build_rollout(rollout_config(), qwen2_model, device="cpu")
    prompts = make_prompts(seed=8)
    first = rollout.generate_sequences(prompts)
    assert rollout.runner.cache is not None
    rollout.sleep()
    assert rollout.runner.cache is None
    rollout.sleep(level=2)
    rollout.wake_up()
    assert torch.equal(rollout.generate_sequences(prompts).batch["responses"], first.batch["responses"])
    with pytest.raises(ValueError, match="sleep level"):
        rollout.sleep(level=3)


def test_seed_reproduces_and_calls_draw_fresh_samples(qwen2_model, make_prompts, rollout_config):
    cfg = rollout_config(do_sample=True, temperature=1.0, seed=123)
    prompts = make_prompts(seed=9)
    r1, r2 = build_rollout(cfg, qwen2_model, device="cpu"), build_rollout(cfg, qwen2_model, device="cpu")
    a, b = r1.generate_sequences(prompts), r2.generate_sequences(prompts)
    assert torch.equal(a.batch["responses"], b.batch["responses"])
    assert not torch.equal(r1.generate_sequences(prompts).batch["responses"], a.batch["responses"])


def test_meta_info_free_call_and_overrides(qwen2_model, make_prompts, rollout_config):
    """No meta_info: EOS/pad come from the model config; meta_info overrides length and sampling."""
    rollout = build_rollout(rollout_config(do_sample=True), qwen2_model, device="cpu")
    bare = make_prompts(seed=10, meta_info={})
    out = rollout.generate_sequences(bare)
    assert out.batch["responses"].shape == (6, 16) and rollout.default_eos == (2,) and rollout.default_pad == 0
    short = make_prompts(seed=10, meta_info={"response_length": 5, "do_sample": False})
    greedy = rollout.generate_sequences(short)
    assert greedy.batch["responses"].shape == (6, 5)
    validate = make_prompts(seed=10, meta_info={"response_length": 5, "validate": True})  # val_kwargs: greedy
    assert torch.equal(rollout.generate_sequences(validate).batch["responses"], greedy.batch["responses"])


def test_bad_inputs_are_explained(qwen2_model, make_prompts, rollout_config):
    rollout = build_rollout(rollout_config(max_model_len=20), qwen2_model, device="cpu")
    prompts = make_prompts(seed=11)
    right_padded = prompts.select()
    right_padded.batch["attention_mask"] = prompts.batch["attention_mask"].flip(-1)
    with pytest.raises(ValueError, match="LEFT-padded"):
        rollout.generate_sequences(right_padded)
    with pytest.raises(ValueError, match="max_model_len=20"):
        rollout.generate_sequences(prompts)  # 12 + 16 > 20
    with pytest.raises(ValueError, match="temperature=-1"):
        prompts.meta_info["temperature"] = -1
        rollout.generate_sequences(prompts)


def test_other_architectures_fall_back_to_hf(make_prompts, rollout_config, caplog):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    with caplog.at_level(logging.WARNING, logger="verl.rollout.builder"):
        rollout = build_rollout(rollout_config(), gpt2, device="cpu")
    assert isinstance(rollout, HFRollout)
    assert "falling back to the hf backend" in caplog.text and "gpt2" in caplog.text
    out = rollout.generate_sequences(make_prompts(seed=12))
    assert out.batch["responses"].shape == (6, 16)


def test_torch_compiled_step_and_sampler_give_the_same_samples(make_prompts, rollout_config):
    """The GPU path compiles the decode step and the sampler; inductor also runs on CPU, so the compiled
    functions are checked here against the eager ones (same seed -> same random numbers -> same tokens)."""
    model = tiny_model("qwen3", seed=0, num_hidden_layers=1)  # compile time grows with the graph
    prompts = make_prompts(batch=6, seed=13)
    cfg = rollout_config(do_sample=True, top_k=20, response_length=8, ignore_eos=True)  # one batch size
    eager = build_rollout(cfg, model, device="cpu")
    compiled = build_rollout(cfg, model, device="cpu")
    compiled.runner.use_compile = True
    a, b = eager.generate_sequences(prompts), compiled.generate_sequences(prompts)
    assert compiled.runner._step.compiled is not None and compiled.runner._pick.compiled is not None
    assert torch.equal(a.batch["responses"], b.batch["responses"])
    torch.testing.assert_close(a.batch["rollout_log_probs"], b.batch["rollout_log_probs"], atol=1e-5, rtol=0)


def test_padded_bucket_batches_as_with_cuda_graphs_change_nothing(qwen2_model, eos_prompts, rollout_config,
                                                                  monkeypatch):
    """On GPU each decode step runs a captured bucket B >= the occupied slots, replaying into a static output.
    Emulated on CPU (same buffers, same padding rows, a 'graph' that re-runs the eager step into its output)."""
    from verl.rollout.native import runner as runner_module

    class ReplayEager:
        def __init__(self, runner, batch):
            self.runner, self.batch = runner, batch
            self.out = runner._run(batch).clone()

        def replay(self):
            self.out.copy_(self.runner._run(self.batch))

    def capture(self, batch):
        graph = ReplayEager(self, batch)
        return graph, graph.out

    monkeypatch.setattr(runner_module.ModelRunner, "_capture", capture)
    exact = build_rollout(rollout_config(max_num_seqs=7), qwen2_model, device="cpu")
    bucketed = build_rollout(rollout_config(max_num_seqs=7), qwen2_model, device="cpu")
    original = runner_module.ModelRunner.ensure_cache

    def ensure_cache_with_buckets(self, num_slots, max_len):
        cache = original(self, num_slots, max_len)
        self.buckets = runner_module.bucket_sizes(num_slots)  # 1, 2, 4, 7
        return cache

    monkeypatch.setattr(bucketed.runner, "ensure_cache", ensure_cache_with_buckets.__get__(bucketed.runner))
    batches = []
    decode = bucketed.runner.decode
    monkeypatch.setattr(bucketed.runner, "decode", lambda b: batches.append(b) or decode(b))
    a, b = exact.generate_sequences(eos_prompts), bucketed.generate_sequences(eos_prompts)
    assert set(batches) <= {1, 2, 4, 7} and len(set(batches)) >= 2 and bucketed.num_cuda_graphs >= 2
    assert torch.equal(a.batch["responses"], b.batch["responses"])
    torch.testing.assert_close(a.batch["rollout_log_probs"], b.batch["rollout_log_probs"], atol=1e-5, rtol=0)
