"""The policy, critic and reward-model workers through Ray worker groups of 1 and 2 CPU ranks (gloo)."""

import os

import pytest
import torch

ray = pytest.importorskip("ray")

from verl.single_controller.ray import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup  # noqa: E402
from verl.workers.critic import CriticWorker  # noqa: E402
from verl.workers.fsdp_workers import ActorRolloutRefWorker  # noqa: E402
from verl.workers.fsdp import load_hf_model  # noqa: E402
from verl.utils.metric import reduce_metrics  # noqa: E402

N_PROMPTS, N = 4, 1  # a mini-batch of 4 prompts x 1 greedy response = 4 trajectories


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()


def policy_config(model_dir, micro_batch, **actor):
    return {
        "model": {"path": model_dir, "use_remove_padding": True, "enable_gradient_checkpointing": True},
        "actor": {"ppo_mini_batch_size": N_PROMPTS, "ppo_micro_batch_size_per_gpu": micro_batch, "use_kl_loss": True,
                  "entropy_coeff": 0.01, "grad_clip": 100.0, **actor,
                  # a large eps keeps Adam's step linear in the gradient, so float noise in near-zero gradients
                  # cannot flip a step's sign between the 1-rank and 2-rank runs
                  "optim": {"lr": 0.5, "eps": 1.0, "lr_warmup_steps": 2, "warmup_style": "cosine"}},
        "rollout": {"name": "native", "n": N, "prompt_length": 10, "response_length": 7, "do_sample": False,
                    "log_prob_micro_batch_size_per_gpu": 2, "dtype": "float32"},
    }


def policy_group(model_dir, ranks, micro_batch, **actor):
    pool = RayResourcePool(process_on_nodes=[ranks], use_gpu=False)
    cls = RayClassWithInitArgs(ActorRolloutRefWorker, policy_config(model_dir, micro_batch, **actor),
                               role="actor_rollout_ref", total_training_steps=4)
    wg = RayWorkerGroup(pool, cls)
    wg.pool = pool
    wg.init_model()
    return wg


def release(wg):
    """Kill a group's workers and give its placement group back (killing alone keeps the CPUs reserved)."""
    wg.kill()
    wg.pool.remove()


def training_batch(make_batch):
    data = make_batch(n=N_PROMPTS * N, seed=1)
    g = torch.Generator().manual_seed(0)
    data.batch["advantages"] = torch.randn(len(data), 1, generator=g).expand(-1, 7) * data.batch["response_mask"]
    return data


@pytest.fixture(scope="module")
def two_rank_policy(tiny_model_dir):
    wg = policy_group(tiny_model_dir, ranks=2, micro_batch=1)
    yield wg
    release(wg)


def test_log_probs_on_two_ranks_equal_a_plain_forward(two_rank_policy, tiny_model_dir, make_batch):
    data = make_batch(n=5, seed=2)  # uneven over 2 ranks
    out = two_rank_policy.compute_log_prob(data)
    model = load_hf_model(tiny_model_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=data.batch["input_ids"], attention_mask=data.batch["attention_mask"],
                       position_ids=data.batch["position_ids"]).logits[:, -8:-1] / 1.0
    expected = torch.log_softmax(logits, -1).gather(-1, data.batch["responses"][..., None]).squeeze(-1)
    mask = data.batch["response_mask"].bool()
    assert out.batch["old_log_probs"].shape == (5, 7)
    torch.testing.assert_close(out.batch["old_log_probs"][mask], expected[mask], atol=1e-5, rtol=0)
    ref = two_rank_policy.compute_ref_log_prob(data)
    torch.testing.assert_close(ref.batch["ref_log_prob"], out.batch["old_log_probs"], atol=1e-5, rtol=0)


def worker_metrics(out):
    """One number per metric, as the trainer reduces the per-rank lists DataProto.concat gathered."""
    return reduce_metrics(dict(out.meta_info["metrics"]))


def prepared(wg, data):
    data = data.union(wg.compute_log_prob(data))
    return data.union(wg.compute_ref_log_prob(data))


def test_two_ranks_micro_one_equal_one_rank_whole_batch(two_rank_policy, tiny_model_dir, make_batch):
    one = policy_group(tiny_model_dir, ranks=1, micro_batch=N_PROMPTS * N)
    before = one.get_actor_weights()[0]
    data = prepared(one, training_batch(make_batch))
    m1 = worker_metrics(one.update_actor(data))
    m2 = worker_metrics(two_rank_policy.update_actor(data))
    w1, w2 = one.get_actor_weights()[0], two_rank_policy.get_actor_weights()[0]
    for name in before:
        torch.testing.assert_close(w2[name], w1[name], atol=2e-6, rtol=1e-5, msg=f"{name} differs")
        assert not torch.equal(w1[name], before[name]), f"{name} did not change"
    assert m1["actor/pg_loss"] == pytest.approx(m2["actor/pg_loss"], abs=1e-6)
    assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-5)
    for key in ("actor/entropy", "actor/kl_loss", "actor/lr", "actor/pg_clipfrac", "perf/actor_tokens_per_s"):
        assert key in m2
    release(one)


def test_hybrid_engine_generates_from_updated_weights(two_rank_policy, tiny_model_dir, make_batch):
    """After the update above, greedy generation uses the new weights (no disk in between)."""
    from transformers import AutoModelForCausalLM

    weights = two_rank_policy.get_actor_weights()[0]
    prompts = make_batch(n=4, seed=5).select(batch_keys=["prompts"]).rename("prompts", "input_ids")
    p_mask = (prompts.batch["input_ids"] != 0).long()
    prompts.batch["attention_mask"] = p_mask
    prompts.batch["position_ids"] = (p_mask.cumsum(-1) - 1).clamp(min=0)
    out = two_rank_policy.generate_sequences(prompts)
    sync = out.meta_info["metrics"]["timing_s/weight_sync"]
    assert len(sync) == 2 and min(sync) >= 0, "DataProto.concat gathers one value per rank"

    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    fresh.load_state_dict(weights)
    for i in range(len(prompts)):
        mask = p_mask[i].bool()
        ids = prompts.batch["input_ids"][i][mask][None]
        gen = fresh.generate(ids, max_new_tokens=7, do_sample=False, eos_token_id=fresh.config.eos_token_id,
                             pad_token_id=0)[0, ids.shape[1]:]
        n = int(out.batch["response_mask"][i].sum())
        assert out.batch["responses"][i, :n].tolist() == gen[:n].tolist()


def test_checkpoint_round_trip_restores_weights_optimizer_and_schedule(two_rank_policy, tiny_model_dir, make_batch, tmp_path):
    ckpt = str(tmp_path / "global_step_1" / "actor")
    two_rank_policy.save_checkpoint(ckpt)
    assert os.path.exists(os.path.join(ckpt, "huggingface", "config.json"))
    restored = policy_group(tiny_model_dir, ranks=2, micro_batch=1)
    restored.load_checkpoint(ckpt)
    w_a, w_b = two_rank_policy.get_actor_weights()[0], restored.get_actor_weights()[0]
    for name in w_a:
        assert torch.equal(w_a[name], w_b[name]), name
    # identical next steps prove the optimizer moments and the LR schedule came back too
    data = prepared(two_rank_policy, training_batch(make_batch))
    ma = worker_metrics(two_rank_policy.update_actor(data))
    mb = worker_metrics(restored.update_actor(data))
    assert ma["actor/lr"] == mb["actor/lr"]
    w_a, w_b = two_rank_policy.get_actor_weights()[0], restored.get_actor_weights()[0]
    for name in w_a:
        assert torch.equal(w_a[name], w_b[name]), name
    release(restored)


def test_critic_values_and_update_on_two_ranks(tiny_model_dir, make_batch):
    pool = RayResourcePool(process_on_nodes=[2], use_gpu=False)
    cfg = {"ppo_mini_batch_size": N_PROMPTS, "ppo_micro_batch_size_per_gpu": 1, "optim": {"lr": 1e-2}}
    wg = RayWorkerGroup(pool, RayClassWithInitArgs(CriticWorker, cfg, rollout_n=N, total_training_steps=4,
                                                   model_path=tiny_model_dir))
    wg.pool = pool
    wg.init_model()
    data = make_batch(n=N_PROMPTS * N, seed=4)
    values = wg.compute_values(data).batch["values"]
    assert values.shape == (4, 7)
    assert (values[data.batch["response_mask"] == 0] == 0).all()
    data.batch["values"] = values
    data.batch["returns"] = torch.ones(4, 7) * data.batch["response_mask"]
    metrics = worker_metrics(wg.update_critic(data))
    assert metrics["critic/vf_loss"] > 0 and metrics["critic/grad_norm"] > 0
    after = wg.compute_values(data).batch["values"]
    mask = data.batch["response_mask"].bool()
    assert ((after - 1).abs()[mask].mean() < (values - 1).abs()[mask].mean()), "values moved towards the returns"
    release(wg)


def test_lora_two_ranks_equal_one_rank(tiny_model_dir, make_batch):
    """LoRA (frozen base + adapters in the same FSDP2 groups): 2 ranks x micro-batch 1 == one unsharded process x
    the whole batch, for the reference (adapters disabled), the update and the merged weights the rollout gets."""
    import torch.distributed as dist

    if dist.is_initialized() or "MASTER_ADDR" in os.environ:
        pytest.skip("this process already belongs to a torch.distributed world")
    configs = []
    for micro in (N_PROMPTS * N, 1):
        cfg = policy_config(tiny_model_dir, micro)
        cfg["model"].update(lora_rank=4, lora_alpha=8)
        configs.append(cfg)
    one = ActorRolloutRefWorker(configs[0], role="actor_rollout", total_training_steps=4)  # in this process
    one.init_model()
    pool = RayResourcePool(process_on_nodes=[2], use_gpu=False)
    two = RayWorkerGroup(pool, RayClassWithInitArgs(ActorRolloutRefWorker, configs[1], role="actor_rollout",
                                                    total_training_steps=4))
    two.pool = pool
    two.init_model()
    base = one.get_actor_weights()
    data = make_batch(n=N_PROMPTS * N, seed=1)
    advantages = torch.randn(len(data), 1, generator=torch.Generator().manual_seed(0))
    data.batch["advantages"] = advantages.expand(-1, 7) * data.batch["response_mask"]
    data = data.union(one.compute_log_prob(data)).union(one.compute_ref_log_prob(data))  # ref: adapters disabled
    ref_two = two.compute_ref_log_prob(data).batch["ref_log_prob"]
    torch.testing.assert_close(ref_two, data.batch["ref_log_prob"], atol=1e-6, rtol=0)
    m1, m2 = worker_metrics(one.update_actor(data)), worker_metrics(two.update_actor(data))
    assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-5)
    w1, w2 = one.get_actor_weights(), two.get_actor_weights()[0]
    assert w1.keys() == base.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=2e-6, rtol=1e-5, msg=f"{name} differs")
    changed = [n for n in w1 if not torch.equal(w1[n], base[n])]
    assert changed and all(n.endswith("proj.weight") for n in changed), "only adapted (merged) weights move"
    release(two)
