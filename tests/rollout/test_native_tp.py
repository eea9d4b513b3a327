"""Tensor-parallel native rollout: 2 gloo ranks sharing one replica generate what one rank generates (greedy
tokens equal, log-probs within 1e-5, fp32), hold half the heads and their KV cache, and stay equal after a
weight update; bad sizes are refused naming the key."""

from __future__ import annotations

import re

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.rollout.conftest import base_config, left_padded_prompts
from verl.models.testing import tiny_model
from tests.helpers.net import free_port
from tests.workers.test_ulysses import _validate as _validate_4_ranks

# (model type, config overrides): Qwen2 (q/k/v biases, tied embeddings), Llama with every bias and an untied
# head, Qwen3 (q/k norms, head_dim != hidden / heads)
MODELS = [
    ("qwen2", {}),
    ("llama", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": False}),
    ("qwen3", {}),
]



def _generate(engine, prompts, **meta):
    batch = prompts.select()
    batch.meta_info = {**prompts.meta_info, **meta}
    out = engine.generate_sequences(batch)
    return out.batch["responses"], out.batch["response_mask"], out.batch["rollout_log_probs"]


def _same(a, b, what: str) -> None:
    tokens_a, mask_a, lp_a = a
    tokens_b, mask_b, lp_b = b
    assert torch.equal(tokens_a, tokens_b), f"{what}: tokens differ"
    assert torch.equal(mask_a, mask_b), what
    torch.testing.assert_close(lp_a, lp_b, atol=1e-5, rtol=0, msg=what)


def _tp_parity(rank: int, world: int, port: int, model_dirs: list[str]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        from transformers import AutoModelForCausalLM

        from verl.rollout import build_rollout
        from verl.rollout.native.tensor_parallel import TensorParallelDecoder
        from verl.workers.parallel.groups import make_rank_group

        group = make_rank_group(world, "actor_rollout_ref.rollout.tensor_model_parallel_size")
        prompts = left_padded_prompts(batch=6, width=12, seed=2)
        for model_dir in model_dirs:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
            one = build_rollout(base_config(), model, device="cpu")
            # the TP engine reads its slices straight from the checkpoint files
            tp = build_rollout(base_config(), model_dir, device="cpu", tensor_parallel=group)
            assert isinstance(tp.decoder, TensorParallelDecoder)
            greedy = _generate(tp, prompts)
            _same(greedy, _generate(one, prompts), f"{model_dir} greedy")
            # each rank holds its half of the key/value heads (and of the query heads / MLP columns)
            c = one.decoder.config
            assert tp.runner.cache.k.shape[2] == c.num_kv_heads // world
            assert tp.decoder.layers[0]["qkv_weight"].shape[0] == (c.q_size + 2 * c.kv_size) // world
            assert tp.decoder.layers[0]["down_weight"].shape[1] == c.intermediate_size // world
            assert tp.decoder.weight_bytes() < one.decoder.weight_bytes()
            # seeded sampling: the group samples one stream (rank 0's tokens), the same as one rank's
            sampled = _generate(tp, prompts, do_sample=True, temperature=1.0, top_p=0.9, seed=7)
            _same(sampled, _generate(one, prompts, do_sample=True, temperature=1.0, top_p=0.9, seed=7),
                  f"{model_dir} sampled")
            parts = [None] * world
            dist.all_gather_object(parts, sampled)
            for other in parts[1:]:
                _same(parts[0], other, "ranks of one group")
            # a weight update (full tensors by HF name, as the actor hands them over) keeps the parity
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1.1)
            one.update_weights(model.state_dict().items())
            tp.update_weights(model.state_dict().items())
            _same(_generate(tp, prompts), _generate(one, prompts), f"{model_dir} after update")
    finally:
        dist.destroy_process_group()


def test_tp2_equals_one_rank(tmp_path):
    dirs = []
    for model_type, overrides in MODELS:
        path = tmp_path / model_type
        tiny_model(model_type, seed=1, **overrides).save_pretrained(path)
        dirs.append(str(path))
    mp.start_processes(_tp_parity, args=(2, free_port(), dirs), nprocs=2, start_method="fork")


def test_heads_must_divide():
    from verl.models.config import DecoderConfig
    from verl.rollout.native.tensor_parallel import local_config
    from verl.models.testing import tiny_config

    cfg = DecoderConfig.from_hf(tiny_config("qwen2"))  # 4 heads, 2 key/value heads
    assert local_config(cfg, 2).num_kv_heads == 1
    with pytest.raises(ValueError, match=r"actor_rollout_ref\.rollout\.tensor_model_parallel_size=4 must divide .* "
                                         r"2 key/value heads"):
        local_config(cfg, 4)


def test_tp_refused_for_other_backends(tmp_path):
    from verl.rollout import build_rollout
    from verl.workers.parallel.groups import RankGroup

    group = RankGroup(None, 2, 0, 0)
    path = tmp_path / "m"
    tiny_model("qwen2").save_pretrained(path)
    with pytest.raises(ValueError, match=r"tensor_model_parallel_size=2 is implemented by the native and vllm engines"):
        build_rollout(base_config(name="hf"), str(path), device="cpu", tensor_parallel=group)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tp") / "model"
    tiny_model("qwen2").save_pretrained(path)  # 4 heads, 2 key/value heads, MLP 128
    return str(path)


def _validate(model_dir, tmp_path, *extra):
    _validate_4_ranks(model_dir, tmp_path, "actor_rollout_ref.actor.ppo_mini_batch_size=2", *extra)


TP = "actor_rollout_ref.rollout.tensor_model_parallel_size"


@pytest.mark.parametrize("extra, error", [
    ([f"{TP}=2"], None),
    ([f"{TP}=2", "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"], None),
    ([f"{TP}=4"], f"{TP}=4 must divide the model's 4 attention heads and 2 key/value heads"),
    ([f"{TP}=3"], f"{TP}=3 must divide the 4 ranks of the worker group"),
    ([f"{TP}=2", "trainer.n_gpus_per_node=3", "data.train_batch_size=6", "actor_rollout_ref.actor.ppo_mini_batch_size=3"],
     f"{TP}=2 must divide the 3 ranks"),
    ([f"{TP}=2", "actor_rollout_ref.rollout.name=hf"], f"{TP}=2: the hf backend runs one full replica per rank; set "
                                                      "actor_rollout_ref.rollout.name=native (or vllm)"),
    ([f"{TP}=2", "actor_rollout_ref.rollout.multi_turn.enable=true", "data.return_raw_chat=true"],
     f"{TP}=2 with actor_rollout_ref.rollout.multi_turn.enable=true"),
    ([f"{TP}=0"], TP),
])
def test_config_checks(model_dir, tmp_path, extra, error):
    from verl.utils.config import ConfigError

    if error is None:
        _validate(model_dir, tmp_path, *extra)
    else:
        with pytest.raises(ConfigError, match=re.escape(error)):
            _validate(model_dir, tmp_path, *extra)


def test_backend_model_checks():
    """vLLM splits any model it runs (its own layers); the native engine only the Llama family. (vLLM on CPU refuses
    the tiny models' head size before this check in ``validate_config``, so it is checked directly.)"""
    from types import SimpleNamespace

    from verl.rollout.parallel import check_tp_config, check_tp_model

    check_tp_config(2, 4, "vllm", False)
    gemma = SimpleNamespace(model_type="gemma2", num_attention_heads=8, num_key_value_heads=4, intermediate_size=96)
    check_tp_model(gemma, 4, "vllm")
    with pytest.raises(ValueError, match=f"{TP}=2 needs the native engine, which does not implement model_type 'gemma2'"):
        check_tp_model(gemma, 2, "native")
    with pytest.raises(ValueError, match=f"{TP}=8 must divide the model's 8 attention heads and 4 key/value heads"):
        check_tp_model(gemma, 8, "vllm")
