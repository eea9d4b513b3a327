"""Value loss, entropy, and DAPO's overlong reward shaping."""

import math

import pytest
import torch

from verl.trainer.ppo.core_algos import (
    agg_loss_counts,
    apply_overlong_penalty,
    compute_entropy_loss,
    compute_overlong_penalty,
    compute_value_loss,
    entropy_from_logits,
)


def test_value_loss_by_hand():
    vpreds = torch.tensor([[1.0, 2.0, 50.0]], requires_grad=True)
    values = torch.tensor([[0.0, 2.0, 0.0]])
    returns = torch.tensor([[1.5, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    vf_loss, clipfrac = compute_value_loss(vpreds, returns, values, mask, cliprange_value=0.5)
    # token 0: clipped to 0.5, error (0.5 - 1.5)^2 = 1 > 0.25, the clipped one counts (and has no gradient)
    # token 1: inside the range, error 4
    assert vf_loss.item() == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    assert clipfrac.item() == pytest.approx(0.5)
    vf_loss.backward()
    torch.testing.assert_close(vpreds.grad, torch.tensor([[0.0, 0.5 * 2 * 2.0 / 2, 0.0]]))


def test_value_loss_is_split_invariant_with_global_counts():
    gen = torch.Generator().manual_seed(0)
    vpreds, values, returns = (torch.randn(4, 3, generator=gen) for _ in range(3))
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]])
    for mode in ("token-mean", "seq-mean-token-mean"):
        whole, _ = compute_value_loss(vpreds, returns, values, mask, 0.2, mode)
        tokens, seqs = agg_loss_counts(mask)
        parts = [
            compute_value_loss(vpreds[r], returns[r], values[r], mask[r], 0.2, mode,
                               global_num_tokens=tokens, global_num_seqs=seqs)[0]  # fmt: skip
            for r in (slice(0, 1), slice(1, 4))
        ]
        torch.testing.assert_close(sum(parts), whole)


def test_value_loss_shape_error():
    with pytest.raises(ValueError, match="response_mask"):
        compute_value_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 3), 0.5)


def naive_entropy(logits):
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def test_entropy_matches_naive_values_and_gradients_across_chunks():
    logits = torch.randn(2, 5, 11, dtype=torch.float64, requires_grad=True)
    out = entropy_from_logits(logits, chunk_size=3)  # 10 rows in chunks of 3, 3, 3, 1
    assert out.shape == (2, 5)
    weights = torch.randn(2, 5, dtype=torch.float64)
    (out * weights).sum().backward()
    chunked_grad = logits.grad.clone()
    logits.grad = None
    ref = naive_entropy(logits)
    (ref * weights).sum().backward()
    torch.testing.assert_close(out, ref.detach())
    torch.testing.assert_close(chunked_grad, logits.grad)


def test_entropy_special_cases():
    uniform = torch.zeros(3, 8, dtype=torch.bfloat16)
    out = entropy_from_logits(uniform)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((3,), math.log(8)))
    peaked = torch.tensor([[1000.0, 0.0, 0.0]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="chunk_size"):
        entropy_from_logits(uniform, chunk_size=0)


def test_entropy_loss_aggregates_over_the_response():
    logits = torch.zeros(2, 3, 4)
    logits[1, 2] = torch.tensor([100.0, 0.0, 0.0, 0.0])  # masked out, entropy 0
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert compute_entropy_loss(logits, mask).item() == pytest.approx(math.log(4))


def test_overlong_penalty_by_hand():
    lengths = torch.tensor([10, 15, 16, 20, 25])  # max 20, buffer 5: penalty starts after 15 tokens
    out = compute_overlong_penalty(lengths, max_response_length=20, overlong_buffer_len=5, penalty_factor=1.0)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, -0.2, -1.0, -1.0]))
    half = compute_overlong_penalty(lengths, 20, 5, penalty_factor=0.5)
    torch.testing.assert_close(half, torch.tensor([0.0, 0.0, -0.1, -0.5, -0.5]))
    with pytest.raises(ValueError, match="overlong_buffer_len"):
        compute_overlong_penalty(lengths, 20, 0)


def test_apply_overlong_penalty_lands_on_the_last_valid_token():
    scores = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    shaped, penalty = apply_overlong_penalty(scores, mask, max_response_length=4, overlong_buffer_len=2)
    torch.testing.assert_close(penalty, torch.tensor([-1.0, 0.0, 0.0]))
    torch.testing.assert_close(shaped, torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0] * 4]))
    assert scores[0, 3] == 1.0  # input untouched
