"""Tensor parallelism x FSDP2 in training (torch-native, verl's ``*.megatron.tensor_model_parallel_size``): TP=2
forwards give one rank's log-probs, entropies and values; a TP=2 x FSDP=2 PPO step equals an FSDP=4 step; bad
sizes and Megatron features that do not exist here are refused naming the key."""

from __future__ import annotations

import re

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.workers.conftest import rollout_batch
from tests.helpers.net import free_port
from tests.workers.test_ulysses import _validate, assert_same_update, policy_group_update
from verl.workers.fsdp import load_hf_model

TP_KEY = "actor_rollout_ref.actor.megatron.tensor_model_parallel_size"


def _tp_forwards(rank: int, port: int, model_dir: str, out: str) -> None:
    """Runs on each of 2 ranks: the policy and a value model split over one TP group of 2."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        from verl.workers.attention import use_packed_attention
        from verl.workers.config import FSDPConfig
        from verl.workers.forward import MODEL_INPUTS, response_layout, response_logits, response_values
        from verl.workers.fsdp import build_sharded_model

        cfg = type("M", (), {"path": model_dir})()
        batch = rollout_batch(n=5, prompt_len=9, response_len=7, seed=3).batch
        batch = {k: batch[k] for k in MODEL_INPUTS}
        policy = build_sharded_model(cfg, "causal_lm", FSDPConfig(), 2, torch.device("cpu"), train=False, tp_size=2)
        local = policy.model.layers[0].self_attn.q_proj.weight.to_local()
        assert local.shape[0] == policy.config.num_attention_heads * 16 // 2, local.shape  # 2 of 4 heads here
        use_packed_attention(policy)
        result = {}
        with torch.no_grad():
            for packed in (True, False):  # packed: the bucket kernel on local heads; padded: sdpa with a mask
                result[packed] = response_logits(policy, response_layout(batch, 7, packed), 7, 0.7, packed, True)
            critic = build_sharded_model(cfg, "value", FSDPConfig(), 2, torch.device("cpu"), train=False, tp_size=2)
            use_packed_attention(critic)
            result["values"] = response_values(critic, response_layout(batch, 7, True), 7, packed=True)
        if rank == 1:  # the second TP rank: its results are the group's too
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def test_tp2_forwards_equal_one_rank(tiny_model_dir, tmp_path):
    from verl.workers.attention import use_packed_attention
    from verl.workers.config import FSDPConfig
    from verl.workers.forward import MODEL_INPUTS, response_layout, response_logits, response_values

    out = str(tmp_path / "tp.pt")
    mp.start_processes(_tp_forwards, args=(free_port(), tiny_model_dir, out), nprocs=2, start_method="fork")
    tp = torch.load(out, weights_only=False)
    batch = rollout_batch(n=5, prompt_len=9, response_len=7, seed=3).batch
    batch = {k: batch[k] for k in MODEL_INPUTS}
    model = load_hf_model(tiny_model_dir).eval()
    use_packed_attention(model)
    with torch.no_grad():
        lp, ent = response_logits(model, response_layout(batch, 7, True), 7, 0.7, True, True)
        critic = load_hf_model(tiny_model_dir, kind="value", init_seed=FSDPConfig().seed).eval()
        values = response_values(critic, response_layout(batch, 7, False), 7, packed=False)
    for packed in (True, False):
        torch.testing.assert_close(tp[packed][0], lp, atol=1e-5, rtol=0)
        torch.testing.assert_close(tp[packed][1], ent, atol=1e-5, rtol=0)
    torch.testing.assert_close(tp["values"], values, atol=1e-5, rtol=0)


def test_tp2_fsdp2_step_equals_fsdp4_step(tiny_model_dir, make_batch, tmp_path):
    """One PPO update (actor + reference in one worker) on 4 ranks: TP=2 x FSDP=2 (2 data-parallel groups, each
    fed once) against FSDP=4: the same log-probs, loss, gradient norm and weights after the optimizer step."""
    from tests.workers.test_fsdp_workers import policy_config, training_batch

    results = []
    for tp in (1, 2):
        cfg = policy_config(tiny_model_dir, micro_batch=1, megatron={"tensor_model_parallel_size": tp})
        cfg["ref"] = {"megatron": {"tensor_model_parallel_size": tp}}
        results.append(policy_group_update(4, tp, cfg, training_batch(make_batch), tmp_path / f"tp{tp}.pt"))
    fsdp, tp = results
    assert_same_update(fsdp, tp, tiny_model_dir)
    # the tiny model ties its output head to the embedding: still one tensor after the meta build and the update
    assert torch.equal(tp["weights"]["lm_head.weight"], tp["weights"]["model.embed_tokens.weight"])


@pytest.mark.parametrize("extra, error", [
    ([f"{TP_KEY}=2"], None),
    (["actor_rollout_ref.actor.strategy=megatron", f"{TP_KEY}=2"], None),
    ([f"{TP_KEY}=4"], f"{TP_KEY}=4 must divide the model's 4 attention heads and 2 key/value heads"),
    ([f"{TP_KEY}=3"], f"{TP_KEY}=3 must divide the 4 ranks"),
    ([f"{TP_KEY}=2", "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"], "is not available; use one"),
    ([f"{TP_KEY}=2", "actor_rollout_ref.actor.fsdp_config.fsdp_size=1"], "(hybrid sharding) is not available"),
    ([f"{TP_KEY}=2", "actor_rollout_ref.ref.megatron.tensor_model_parallel_size=1"],
     "actor_rollout_ref.ref.megatron.tensor_model_parallel_size=1 disagrees"),
    (["actor_rollout_ref.actor.megatron.pipeline_model_parallel_size=2"],
     "actor_rollout_ref.actor.megatron.pipeline_model_parallel_size=2 is not supported: pipeline parallelism"),
    (["actor_rollout_ref.actor.megatron.expert_model_parallel_size=2"],
     "actor_rollout_ref.actor.megatron.expert_model_parallel_size=2 is not supported: expert parallelism"),
    (["actor_rollout_ref.ref.megatron.context_parallel_size=2"],
     "actor_rollout_ref.ref.megatron.context_parallel_size=2 is not supported"),
    (["actor_rollout_ref.actor.megatron.virtual_pipeline_model_parallel_size=2"],
     "virtual_pipeline_model_parallel_size=2 is not supported"),
    (["algorithm.adv_estimator=gae", "critic.ppo_micro_batch_size_per_gpu=1", "critic.ppo_mini_batch_size=1",
      "critic.megatron.pipeline_model_parallel_size=2"], "critic.megatron.pipeline_model_parallel_size=2 is not"),
    (["algorithm.adv_estimator=gae", "critic.ppo_micro_batch_size_per_gpu=1", "critic.ppo_mini_batch_size=1",
      "critic.megatron.tensor_model_parallel_size=4"], "critic.megatron.tensor_model_parallel_size=4 must divide"),
    (["reward_model.strategy=megatron"], "reward_model.strategy='megatron' is not supported"),
])
def test_megatron_keys(tiny_model_dir, tmp_path, extra, error):
    """verl's Megatron keys: tensor parallelism maps onto TP x FSDP2 (the data-parallel size of the batch checks is
    world / TP: 1 prompt x 2 responses do not split over 4 ranks but do over 2); the rest is refused before
    anything starts."""
    from verl.utils.config import ConfigError

    if error is None:
        _validate(tiny_model_dir, tmp_path, *extra)
    else:
        with pytest.raises(ConfigError, match=re.escape(error)):
            _validate(tiny_model_dir, tmp_path, *extra)


def test_megatron_offload_keys_offload():
    from verl.workers.config import ActorConfig
    from verl.workers.parallel.tensor_parallel import with_megatron_offload

    actor = ActorConfig()
    actor.megatron.param_offload = actor.megatron.optimizer_offload = True
    fsdp = with_megatron_offload(actor.fsdp_config, actor.megatron)
    assert fsdp.param_offload and fsdp.optimizer_offload
    assert not actor.fsdp_config.param_offload  # the config itself is not rewritten


def _critic_run(rank: int, world: int, tp: int, port: int, model_dir: str, data, out: str, ckpt: str) -> None:
    """One rank of a critic worker group (no Ray): values, one update, and (with TP) a checkpoint round trip."""
    import os

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from verl.workers.critic import CriticWorker
    from verl.workers.fsdp import full_state_dict_iter

    # Adam with a large eps steps linearly in the gradient: float noise in the key bias's (mathematically zero)
    # gradient cannot become a full-size step of either sign
    cfg = {"ppo_mini_batch_size": 4, "ppo_micro_batch_size_per_gpu": 2, "optim": {"lr": 0.5, "eps": 1.0},
           "megatron": {"tensor_model_parallel_size": tp},
           "checkpoint": {"save_contents": ["model", "optimizer", "extra", "hf_model"]}}
    worker = CriticWorker(cfg, rollout_n=1, total_training_steps=4, model_path=model_dir)
    dp_rank, is_collect = worker._dispatch_info["critic"]
    assert (dp_rank, is_collect) == (rank // tp, rank % tp == 0)
    try:
        worker.init_model()
        data = data.chunk(world // tp)[dp_rank]
        data.batch["values"] = worker.compute_values(data).batch["values"]
        data.batch["returns"] = torch.ones_like(data.batch["values"]) * data.batch["response_mask"]
        metrics = worker.update_critic(data).meta_info["metrics"]
        weights = {name: t.clone() for name, t in full_state_dict_iter(worker.module)}
        if tp > 1:  # sharded checkpoint of 2-D DTensors: save, train on, restore
            worker.save_checkpoint(ckpt)
            worker.update_critic(data)
            worker.load_checkpoint(ckpt)
            for name, t in full_state_dict_iter(worker.module):
                assert torch.equal(t, weights[name]), f"{name} not restored"
            from safetensors.torch import load_file

            exported = load_file(os.path.join(ckpt, "huggingface", "model.safetensors"))  # full tensors, gathered
            assert exported.keys() == weights.keys() and all(torch.equal(exported[k], weights[k]) for k in weights)
        if is_collect:
            torch.save({"values": data.batch["values"], "metrics": metrics, "weights": weights}, out)
    finally:
        dist.destroy_process_group()


def test_critic_tp2_equals_one_rank(tiny_model_dir, make_batch, tmp_path):
    """The critic with TP=2 (one group of 2 ranks): one rank's values, loss, gradient norm and weights after an
    update; its sharded checkpoint restores the weights exactly and its hf_model export holds the full weights."""
    data = make_batch(n=4, seed=4)
    results = []
    for world, tp in ((1, 1), (2, 2)):
        out = str(tmp_path / f"critic{tp}.pt")
        mp.start_processes(_critic_run, args=(world, tp, free_port(), tiny_model_dir, data, out, str(tmp_path / "ckpt")),
                           nprocs=world, start_method="fork")
        results.append(torch.load(out, weights_only=False))
    one, tp = results
    torch.testing.assert_close(tp["values"], one["values"], atol=1e-5, rtol=0)
    before = load_hf_model(tiny_model_dir, kind="value").state_dict()
    for name, w in one["weights"].items():
        torch.testing.assert_close(tp["weights"][name], w, atol=1e-5, rtol=1e-5, msg=f"{name} differs")
        assert not torch.equal(w, before[name]), f"{name} did not change"
    for key in ("critic/vf_loss", "critic/grad_norm"):
        assert tp["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5)
