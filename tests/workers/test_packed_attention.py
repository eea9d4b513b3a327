"""Packed attention (per-sequence kernels, no dense block-diagonal mask) and the chunked log-softmax with
recomputation: same log-probs, losses and gradients as the padded path (fp32, 1e-5) on ragged batches, and the
attention really works per sequence."""

import pytest
import torch
import torch.nn.functional as F

from verl.workers.attention import (
    PACKED_ATTENTION,
    _buckets,
    bucket_layout,
    packed_attention_backend,
    packed_forward_kwargs,
    use_packed_attention,
)
from verl.workers.forward import log_probs_and_entropy, response_logits, response_values
from verl.workers.fsdp import load_hf_model

INPUTS = ("input_ids", "attention_mask", "position_ids")


def inputs(batch):
    return {k: batch.batch[k] for k in INPUTS}


def loss_and_grads(model, batch, packed, temperature=0.8):
    """A PPO-shaped scalar of the log-probs and entropies, and the gradient of every parameter."""
    model.zero_grad(set_to_none=True)
    R = batch.batch["responses"].shape[-1]
    lp, ent = response_logits(model, inputs(batch), R, temperature, packed, calculate_entropy=True)
    adv = torch.linspace(-1, 1, lp.numel()).view_as(lp)
    mask = batch.batch["response_mask"]
    loss = -(lp * adv * mask).sum() / mask.sum() - 0.01 * (ent * mask).sum() / mask.sum()
    loss.backward()
    return lp.detach(), ent.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_packed_log_probs_losses_and_grads_equal_padded(tiny_model_dir, make_batch):
    batch = make_batch(n=7, prompt_len=12, response_len=9, seed=5)  # ragged prompts and responses
    lengths = batch.batch["attention_mask"].sum(-1)
    assert lengths.unique().numel() > 3, "the batch should be ragged"
    padded_model = load_hf_model(tiny_model_dir)
    packed_model = load_hf_model(tiny_model_dir)
    use_packed_attention(packed_model)
    assert packed_model.config._attn_implementation == PACKED_ATTENTION
    lp_pad, ent_pad, loss_pad, grads_pad = loss_and_grads(padded_model, batch, packed=False)
    lp_pack, ent_pack, loss_pack, grads_pack = loss_and_grads(packed_model, batch, packed=True)
    assert lp_pad.abs().sum() > 0
    torch.testing.assert_close(lp_pack, lp_pad, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_pack, ent_pad, atol=1e-5, rtol=0)
    torch.testing.assert_close(loss_pack, loss_pad, atol=1e-5, rtol=0)
    for name, g in grads_pad.items():
        assert g.abs().sum() > 0, f"{name} got no gradient"
        torch.testing.assert_close(grads_pack[name], g, atol=1e-5, rtol=0, msg=name)


def test_a_switched_model_still_serves_padded_batches(tiny_model_dir, make_batch):
    batch = make_batch(n=5, seed=2)
    plain, switched = load_hf_model(tiny_model_dir).eval(), load_hf_model(tiny_model_dir).eval()
    use_packed_attention(switched)
    with torch.no_grad():
        expected, _ = response_logits(plain, inputs(batch), 7, 1.0, packed=False)
        got, _ = response_logits(switched, inputs(batch), 7, 1.0, packed=False)
        packed, _ = response_logits(switched, inputs(batch), 7, 1.0, packed=True)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=0)


def test_packed_values_and_grads_equal_padded(tiny_model_dir, make_batch):
    batch = make_batch(n=6, seed=9)
    results = []
    for packed in (False, True):
        model = load_hf_model(tiny_model_dir, kind="value")
        if packed:
            use_packed_attention(model)
        values = response_values(model, inputs(batch), 7, packed)
        (values * batch.batch["response_mask"]).square().sum().backward()
        results.append((values.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (v_pad, g_pad), (v_pack, g_pack) = results
    torch.testing.assert_close(v_pack, v_pad, atol=1e-5, rtol=0)
    for name, g in g_pad.items():
        torch.testing.assert_close(g_pack[name], g, atol=1e-5, rtol=0, msg=name)


def test_packed_forward_attends_per_length_bucket_not_over_the_row(tiny_model_dir, make_batch, monkeypatch):
    """Attention runs on re-padded buckets of similar lengths: no call sees more keys than the longest sequence,
    and the padded work stays within BUCKET_RATIO**2 of the sum of squared lengths (a dense mask: the row squared)."""
    batch = make_batch(n=8, seed=4)
    lengths = batch.batch["attention_mask"].sum(-1)
    model = load_hf_model(tiny_model_dir).eval()
    use_packed_attention(model)
    seen = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        seen.append((q.shape[0], k.shape[-2], kwargs.get("attn_mask")))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    with torch.no_grad():
        response_logits(model, inputs(batch), 7, 1.0, packed=True)
    layers = model.config.num_hidden_layers
    assert seen and len(seen) % layers == 0, "the packed forward should go through SDPA per bucket on CPU"
    assert max(n for _, n, _ in seen) == int(lengths.max()) < int(lengths.sum())
    assert sum(rows for rows, _, _ in seen) == len(batch) * layers  # every sequence exactly once per layer
    work = sum(rows * n * n for rows, n, _ in seen) / layers
    assert work <= 1.5**2 * int((lengths**2).sum()) < int(lengths.sum()) ** 2
    assert all(mask is None for _, _, mask in seen)  # causal flag, no materialised mask


def test_bucket_layout_round_trips_every_token():
    lengths = [5, 1, 9, 8, 2, 6]
    b = bucket_layout(lengths)
    N = sum(lengths)
    assert sorted(b.scatter.tolist()) == sorted(set(b.scatter.tolist())) and len(b.scatter) == N
    assert torch.equal(b.gather[b.scatter], torch.arange(N)), "scatter points at each token's own padded slot"
    assert sum(rows * n for rows, n in b.shapes) == len(b.gather)
    assert b.shapes == ((3, 9), (1, 5), (1, 2), (1, 1))  # {9, 8, 6} lie within 1.5x of 9; 5, 2, 1 do not


def test_backend_choice_on_cpu_is_length_buckets():
    assert packed_attention_backend(torch.device("cpu"), torch.float32) == "buckets"
    assert packed_attention_backend(torch.device("cpu"), torch.bfloat16) == "buckets"


def test_forward_kwargs_carry_cumulative_offsets_and_the_bucket_layout():
    kw = packed_forward_kwargs([3, 1, 4], torch.device("cpu"))
    assert kw["cu_seq_lens_q"].tolist() == [0, 3, 4, 8] and kw["cu_seq_lens_q"].dtype == torch.int32
    assert kw["max_length_q"] == 4 and kw["packed_shapes"] == ((2, 4), (1, 1))  # {4, 3} within 1.5x, then {1}


def test_buckets_with_sliding_window_equal_a_dense_windowed_mask():
    torch.manual_seed(0)
    lengths, H, D, window = [5, 9, 2, 7], 4, 8, 3
    N = sum(lengths)
    q, k, v = torch.randn(1, H, N, D), torch.randn(1, 2, N, D), torch.randn(1, 2, N, D)
    b = bucket_layout(lengths)
    got = _buckets(q[0].transpose(0, 1), k[0].transpose(0, 1), v[0].transpose(0, 1), b.gather, b.scatter, b.shapes,
                   0.0, None, window)  # (N, H, D)
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    pos = torch.cat([torch.arange(n) for n in lengths])
    i, j = torch.arange(N)[:, None], torch.arange(N)[None]
    mask = (seg[i] == seg[j]) & (j <= i) & (pos[i] - pos[j] < window)
    expected = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=mask)
    torch.testing.assert_close(got, expected[0].transpose(0, 1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("chunk", [None, 3])
def test_log_softmax_pick_gradients_equal_autograd(chunk):
    """Recomputed backward (log-prob and entropy terms, temperature) equals autograd through log_softmax."""
    torch.manual_seed(0)
    logits = torch.randn(10, 13, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 13, (10,))
    g_lp, g_ent = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    lp, ent = log_probs_and_entropy(logits, targets, 0.7, with_entropy=True, chunk_size=chunk)
    (lp * g_lp + ent * g_ent).sum().backward()
    got = logits.grad.clone()
    logits.grad = None
    logp = torch.log_softmax(logits / 0.7, -1)
    ref_lp, ref_ent = logp.gather(-1, targets[:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)
    (ref_lp * g_lp + ref_ent * g_ent).sum().backward()
    torch.testing.assert_close(lp.double(), ref_lp, atol=1e-6, rtol=0)
    torch.testing.assert_close(ent.double(), ref_ent, atol=1e-6, rtol=0)
    torch.testing.assert_close(got, logits.grad, atol=1e-6, rtol=0)


def test_log_softmax_pick_keeps_no_float32_copy_for_backward():
    """bf16 logits: the tensors saved for backward are the bf16 logits and per-row numbers, no (N, V) fp32."""
    logits = torch.randn(64, 1000, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, 1000, (64,))
    saved = []

    def pack(t):
        saved.append((t.dtype, t.numel()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lp, _ = log_probs_and_entropy(logits, targets)
    assert not [s for s in saved if s[0] == torch.float32 and s[1] >= 64 * 1000], saved
    lp.sum().backward()
    assert logits.grad.dtype == torch.bfloat16 and logits.grad.abs().sum() > 0


@pytest.mark.gpu
def test_to_device_moves_a_dict_in_one_copy():
    from verl.utils.device import get_device
    from verl.workers.batching import to_device

    tensors = {"ids": torch.arange(7), "mask": torch.tensor([True, False, True]), "x": torch.randn(3, 5),
               "empty": torch.zeros(0, dtype=torch.int32)}
    moved = to_device(tensors, get_device())
    for key, t in tensors.items():
        assert moved[key].device.type != "cpu" and moved[key].dtype == t.dtype
        assert torch.equal(moved[key].cpu(), t), key
