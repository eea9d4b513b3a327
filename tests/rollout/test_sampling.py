"""Device sampling: greedy, temperature, top-k / top-p sets (empirically), seeds, log-prob convention."""

import pytest
import torch

from verl.rollout.sampling import SamplingParams, filter_logits, sample_tokens


def draws(logits, params, n_draws, seed=0):
    """Sample ``n_draws`` times from each row by repeating rows: ``(n_draws, B)`` tokens."""
    g = torch.Generator().manual_seed(seed)
    rep = logits.repeat(n_draws, 1)
    tokens, _ = sample_tokens(rep, params, g)
    return tokens.view(n_draws, logits.shape[0])


def test_greedy_is_argmax_with_untempered_log_prob():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 0.5]])
    tokens, lp = sample_tokens(logits, SamplingParams(do_sample=False, temperature=0.3))
    assert tokens.tolist() == [1, 0]
    torch.testing.assert_close(lp, torch.log_softmax(logits, -1)[[0, 1], [1, 0]])
    # temperature 0 also means greedy even with do_sample
    assert sample_tokens(logits, SamplingParams(do_sample=True, temperature=0.0))[0].tolist() == [1, 0]


def test_log_prob_is_of_the_tempered_unfiltered_distribution():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=0.7, top_k=5, top_p=0.8)
    tokens, lp = sample_tokens(logits, params, torch.Generator().manual_seed(1))
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, tokens[:, None]).squeeze(-1)
    torch.testing.assert_close(lp, expected)


def test_frequencies_follow_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]])
    tokens = draws(logits, SamplingParams(temperature=1.0), 20000)[:, 0]
    freq = torch.bincount(tokens, minlength=4).float() / tokens.numel()
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.015, rtol=0)


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (-1, 0.6), (5, 0.5), (1, 1.0)])
def test_top_k_top_p_never_leave_the_allowed_set(top_k, top_p):
    logits = torch.randn(8, 40, generator=torch.Generator().manual_seed(3)) * 2
    params = SamplingParams(temperature=1.3, top_k=top_k, top_p=top_p)
    tokens = draws(logits, params, 500)  # (500, 8)
    scaled = logits / 1.3
    for row in range(8):
        order = scaled[row].argsort(descending=True)
        probs = torch.softmax(scaled[row][order[: top_k if top_k > 0 else 40]], -1)
        before = probs.cumsum(0) - probs
        n_allowed = int((before < top_p).sum())
        allowed = set(order[:n_allowed].tolist())
        seen = set(tokens[:, row].tolist())
        assert seen <= allowed, f"row {row}: sampled {seen - allowed} outside {allowed}"
        if n_allowed > 1:
            assert len(seen) > 1  # it does sample, not collapse to the argmax


def test_filter_keeps_ties_at_the_boundary():
    logits = torch.tensor([[3.0, 1.0, 1.0, 0.0]])
    out = filter_logits(logits, top_k=2)
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]
    assert filter_logits(logits, top_k=-1, top_p=1.0) is logits


def test_fixed_seed_reproduces_and_different_seeds_differ():
    logits = torch.randn(16, 100, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.0)
    a = sample_tokens(logits, params, torch.Generator().manual_seed(7))[0]
    b = sample_tokens(logits, params, torch.Generator().manual_seed(7))[0]
    c = sample_tokens(logits, params, torch.Generator().manual_seed(8))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
