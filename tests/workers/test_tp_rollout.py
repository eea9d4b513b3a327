"""Tensor-parallel rollout in the policy worker: 2 ranks as one TP=2 group generate what 2 ranks with a full
replica each generate (greedy tokens equal, log-probs within 1e-5), before and after an actor update whose
weights reach the engine from the FSDP shards, each rank keeping its slice."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.rollout.conftest import left_padded_prompts
from tests.workers.test_fsdp_workers import policy_config, training_batch
from tests.helpers.net import free_port



def _run(rank: int, world: int, tp: int, port: int, cfg: dict, prompts, data, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from tests.workers.test_fsdp_workers import prepared
    from verl.workers.fsdp_workers import ActorRolloutRefWorker

    worker = ActorRolloutRefWorker(cfg, role="actor_rollout_ref", total_training_steps=4)
    dp_rank, is_collect = worker._dispatch_info["rollout"]
    assert (dp_rank, is_collect) == (rank // tp, rank % tp == 0)
    try:
        worker.init_model()
        chunk = prompts.chunk(world // tp)[dp_rank]  # as the mesh dispatch sends it: one chunk per TP group
        before = worker.generate_sequences(chunk)
        worker.update_actor(prepared(worker, data.chunk(world)[rank]))
        after = worker.generate_sequences(chunk)
        qkv_rows = worker.rollout.decoder.layers[0]["qkv_weight"].shape[0]
        if is_collect:
            torch.save({"before": before, "after": after, "qkv_rows": qkv_rows}, f"{out}.{dp_rank}")
    finally:
        dist.destroy_process_group()


def test_tp2_worker_equals_two_replicas(tiny_model_dir, make_batch, tmp_path):
    from verl import DataProto

    prompts = left_padded_prompts(batch=6, width=10, seed=4)
    data = training_batch(make_batch)
    results = {}
    for tp in (1, 2):
        cfg = policy_config(tiny_model_dir, micro_batch=1)
        cfg["rollout"].update(tensor_model_parallel_size=tp, calculate_log_probs=True)
        out = str(tmp_path / f"tp{tp}")
        mp.start_processes(_run, args=(2, tp, free_port(), cfg, prompts, data, out), nprocs=2, start_method="fork")
        parts = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2 // tp)]
        results[tp] = {k: DataProto.concat([p[k] for p in parts]) for k in ("before", "after")}
        results[tp]["qkv_rows"] = parts[0]["qkv_rows"]
    # tiny qwen2: 4 heads + 2 x 2 key/value heads of 16 -> 128 fused rows; half on each TP rank
    assert results[1]["qkv_rows"] == 128 and results[2]["qkv_rows"] == 64
    for when in ("before", "after"):
        one, two = results[1][when].batch, results[2][when].batch
        assert torch.equal(one["responses"], two["responses"]), when
        mask = one["response_mask"].bool()
        torch.testing.assert_close(two["rollout_log_probs"][mask], one["rollout_log_probs"][mask], atol=1e-5, rtol=0)
    assert not torch.equal(results[2]["before"].batch["rollout_log_probs"], results[2]["after"].batch["rollout_log_probs"])
