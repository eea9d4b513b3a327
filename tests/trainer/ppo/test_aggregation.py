"""agg_loss: hand-computed modes, data-parallel invariance with global counts, and no host syncs."""

import pytest
import torch

from verl.trainer.ppo.core_algos import LOSS_AGG_MODES, agg_loss, agg_loss_counts, masked_mean, masked_whiten

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])  # last row: no valid token, not a sequence


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token-mean", (1 + 2 + 4) / 3),
        ("seq-mean-token-sum", ((1 + 2) + 4) / 2),
        ("seq-mean-token-mean", ((1 + 2) / 2 + 4 / 1) / 2),
        ("seq-mean-token-sum-norm", ((1 + 2) / 3 + 4 / 3) / 2),  # L = padded length 3
    ],
)
def test_modes_by_hand(mode, expected):
    assert agg_loss(LOSS, MASK, mode).item() == pytest.approx(expected)


def test_token_sum_norm_uses_the_given_constant():
    out = agg_loss(LOSS, MASK, "seq-mean-token-sum-norm", loss_scale_factor=10)
    assert out.item() == pytest.approx((3 / 10 + 4 / 10) / 2)


def test_masked_positions_never_leak_even_if_inf():
    loss = LOSS.clone()
    loss[2] = float("inf")
    loss[0, 2] = float("nan")
    for mode in LOSS_AGG_MODES:
        assert torch.isfinite(agg_loss(loss, MASK, mode))


def test_empty_mask_gives_zero_not_nan():
    for mode in LOSS_AGG_MODES:
        assert agg_loss(LOSS, torch.zeros_like(MASK), mode).item() == 0.0


def test_counts():
    tokens, seqs = agg_loss_counts(MASK)
    assert (tokens.item(), seqs.item()) == (3.0, 2.0)


def test_bad_mode_and_shape_are_clear_errors():
    with pytest.raises(ValueError, match="seq-mean-token-mean"):
        agg_loss(LOSS, MASK, "mean")
    with pytest.raises(ValueError, match="shape"):
        agg_loss(LOSS, MASK[:, :2], "token-mean")


def _random_batch(seed=0, batch=8, length=6):
    gen = torch.Generator().manual_seed(seed)
    loss = torch.randn(batch, length, generator=gen)
    lengths = torch.tensor([6, 1, 0, 3, 5, 2, 6, 4])
    mask = (torch.arange(length) < lengths[:, None]).long()
    return loss, mask


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("splits", [[4, 4], [3, 5], [1, 2, 5]])
def test_split_with_global_counts_sums_to_whole(mode, splits):
    loss, mask = _random_batch()
    whole = agg_loss(loss, mask, mode, loss_scale_factor=6)
    tokens = seqs = 0
    for m in mask.split(splits):
        t, s = agg_loss_counts(m)
        tokens, seqs = tokens + t, seqs + s  # what the worker's all-reduce produces
    parts = [
        agg_loss(lm, m, mode, global_num_tokens=tokens, global_num_seqs=seqs, loss_scale_factor=6)
        for lm, m in zip(loss.split(splits), mask.split(splits))
    ]
    torch.testing.assert_close(sum(parts), whole)
    # and the local-mean alternative really differs (the test could fail)
    local = sum(agg_loss(lm, m, mode, loss_scale_factor=6) for lm, m in zip(loss.split(splits), mask.split(splits)))
    assert not torch.allclose(local / len(splits), whole)


def test_global_counts_accept_python_numbers():
    loss, mask = _random_batch()
    a = agg_loss(loss, mask, "token-mean", global_num_tokens=int(mask.sum()))
    torch.testing.assert_close(a, agg_loss(loss, mask, "token-mean"))


def test_bf16_losses_reduce_in_float32():
    loss = torch.full((1, 1000), 1.0, dtype=torch.bfloat16)
    mask = torch.ones(1, 1000)
    assert agg_loss(loss, mask, "token-mean").item() == pytest.approx(1.0)


def test_masked_helpers():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    torch.testing.assert_close(masked_mean(x, m, dim=-1), torch.tensor([1.5, 3.0]))
    w = masked_whiten(x, m)
    assert w[m.bool()].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)  # unbiased std of 1,2,3 is 1


@pytest.fixture
def no_host_sync(monkeypatch):
    """Make any tensor -> Python conversion raise: the hot path must never call .item()/float()/bool()."""

    def forbidden(self, *args, **kwargs):
        raise AssertionError("host sync (tensor -> Python value) in the training hot path")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)


def test_hot_path_has_no_host_sync(no_host_sync):
    from verl.trainer.ppo.core_algos import (
        POLICY_LOSS_REGISTRY,
        compute_entropy_loss,
        compute_value_loss,
        kl_penalty,
    )

    loss, mask = _random_batch()
    adv = loss.flip(0)
    tokens, seqs = agg_loss_counts(mask)
    for mode in LOSS_AGG_MODES:
        agg_loss(loss, mask, mode, global_num_tokens=tokens, global_num_seqs=seqs)
        for fn in POLICY_LOSS_REGISTRY.values():
            fn(loss * 0.1, loss * 0.12, adv, mask, loss_agg_mode=mode, global_num_tokens=tokens,
               global_num_seqs=seqs, clip_cov_ratio=0.3, kl_cov_ratio=0.3, rollout_is_weights=mask.float())  # fmt: skip
        compute_value_loss(loss, adv, loss * 0.5, mask, 0.2, mode, global_num_tokens=tokens, global_num_seqs=seqs)
        compute_entropy_loss(torch.randn(8, 6, 5), mask, mode, global_num_tokens=tokens, global_num_seqs=seqs)
    kl_penalty(loss, adv, "k3+")
