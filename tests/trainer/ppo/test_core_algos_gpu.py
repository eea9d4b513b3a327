"""On an accelerator: the losses give the CPU's numbers and never synchronise with the host."""

import numpy as np
import pytest
import torch

from verl.trainer.ppo.core_algos import (
    LOSS_AGG_MODES,
    agg_loss_counts,
    compute_entropy_loss,
    compute_grpo_outcome_advantage,
    compute_value_loss,
    get_policy_loss_fn,
)
from verl.utils.device import get_device

pytestmark = pytest.mark.gpu

DETERMINISTIC = ["vanilla", "gspo", "gpg", "geo_mean", "cispo"]


def make_batch(device):
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(16, 12, generator=gen) - 2.0
    log_prob = old + 0.2 * torch.randn(16, 12, generator=gen)
    adv = torch.randn(16, 1, generator=gen).expand(16, 12).contiguous()
    mask = (torch.arange(12) < torch.randint(1, 13, (16, 1), generator=gen)).float()
    return [t.to(device) for t in (old, log_prob, adv, mask)]


def run_losses(old, log_prob, adv, mask, mode):
    tokens, seqs = agg_loss_counts(mask)  # device tensors, as after the worker's all-reduce
    out = {}
    for name in DETERMINISTIC + ["clip_cov", "kl_cov"]:
        out[name] = get_policy_loss_fn(name)(
            old, log_prob, adv, mask, cliprange=0.2, loss_agg_mode=mode, global_num_tokens=tokens,
            global_num_seqs=seqs, clip_cov_ratio=0.1, kl_cov_ratio=0.1,
        )  # fmt: skip
    out["value"] = compute_value_loss(log_prob, adv, old, mask, 0.2, mode, global_num_tokens=tokens)
    out["entropy"] = (compute_entropy_loss(torch.stack([old, log_prob], -1), mask, mode, global_num_seqs=seqs),)
    return out


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_losses_match_cpu_without_host_sync(mode):
    device = get_device()
    cpu = run_losses(*make_batch("cpu"), mode)
    batch = make_batch(device)  # blocking host-to-device copies: done before the check is armed
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")  # from here, any .item()/nonzero()/D2H copy raises
    try:
        acc = run_losses(*batch, mode)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for name in DETERMINISTIC + ["value", "entropy"]:
        for a, b in zip(acc[name], cpu[name]):
            assert a.device.type == device.type
            torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-6, msg=name)


def test_group_advantage_on_accelerator():
    device = get_device()
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    index = np.array(["a", "a", "b", "b"], dtype=object)
    acc, _ = compute_grpo_outcome_advantage(rewards.to(device), torch.ones(4, 2, device=device), index)
    cpu, _ = compute_grpo_outcome_advantage(rewards, torch.ones(4, 2), index)
    assert acc.device.type == device.type
    torch.testing.assert_close(acc.cpu(), cpu)
