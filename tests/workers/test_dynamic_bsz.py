"""Token-budget micro-batches (``use_dynamic_bsz``): same log-probs and same update as fixed micro-batches, in one
process and on 2 FSDP2 ranks whose micro-batch counts differ before they agree; the partitioner and the
per-rank batch plan, including the errors that name the config key to fix."""

import os

import pytest
import torch

from verl import DataProto
from verl.utils.config import from_mapping
from verl.utils.metric import reduce_metrics
from verl.workers.actor import PPOActor
from verl.workers.batching import BatchPlan, split_micro_batches, token_balanced_partitions
from verl.workers.config import ActorRolloutRefConfig
from verl.workers.fsdp import build_lr_scheduler, build_optimizer, load_hf_model

SECTION = "actor_rollout_ref.actor"

# ----------------------------------------------------------------------------------- token_balanced_partitions


def check_partition(groups, lengths, budget):
    assert sorted(i for g in groups for i in g) == list(range(len(lengths))), "each sample exactly once"
    assert all(g == sorted(g) for g in groups), "indices keep their order inside a micro-batch"
    assert all(sum(lengths[i] for i in g) <= budget for g in groups), "every micro-batch within the budget"


def test_partitions_use_the_fewest_micro_batches_the_budget_allows():
    lengths = [5, 9, 1, 5, 4, 6]  # 30 tokens
    groups = token_balanced_partitions(lengths, 10)
    check_partition(groups, lengths, 10)
    assert len(groups) == 3  # ceil(30 / 10) and it fits exactly: {9, 1}, {6, 4}, {5, 5}
    assert token_balanced_partitions(lengths, 30) == [list(range(6))]


def test_partitions_add_micro_batches_when_the_token_sum_bound_cannot_be_met():
    lengths = [6, 6, 6]  # ceil(18 / 10) = 2 groups cannot hold three sixes
    groups = token_balanced_partitions(lengths, 10)
    check_partition(groups, lengths, 10)
    assert len(groups) == 3


def test_partitions_honour_min_parts_and_balance_loads():
    lengths = [8, 7, 6, 5, 4, 3, 2, 1]  # 36 tokens
    groups = token_balanced_partitions(lengths, 100, min_parts=3)
    check_partition(groups, lengths, 100)
    loads = sorted(sum(lengths[i] for i in g) for g in groups)
    assert len(groups) == 3 and loads[-1] - loads[0] <= 2, loads


def test_a_sequence_over_the_budget_names_the_key_to_raise():
    with pytest.raises(ValueError, match=r"a sequence of 12 tokens exceeds the micro-batch token budget 10.*"
                                         r"_max_token_len_per_gpu"):
        token_balanced_partitions([3, 12, 4], 10)


def test_split_micro_batches_restore_gives_back_the_input_order():
    lengths = torch.tensor([7, 2, 5, 3, 8, 1])
    mask = (torch.arange(8)[None, :] < lengths[:, None]).long()
    data = DataProto.from_dict({"attention_mask": mask, "row": torch.arange(6)})
    micro, restore = split_micro_batches(data, BatchPlan(6, None, 10))
    assert len(micro) == 3 and all(int(mb.batch["attention_mask"].sum()) <= 10 for mb in micro)  # 26 tokens
    rows = torch.cat([mb.batch["row"] for mb in micro])
    assert rows[restore].tolist() == list(range(6))
    fixed, none = split_micro_batches(data, BatchPlan(6, 4, None))
    assert none is None and [len(mb) for mb in fixed] == [4, 2]


def test_a_rank_resplits_into_the_count_the_ranks_agreed_on(monkeypatch):
    from verl.workers import batching

    lengths = torch.tensor([4, 4, 4, 4])
    data = DataProto.from_dict({"attention_mask": (torch.arange(6)[None, :] < lengths[:, None]).long()})
    assert len(split_micro_batches(data, BatchPlan(4, None, 8))[0]) == 2  # alone: 2 micro-batches of 8 tokens
    monkeypatch.setattr(batching, "max_over_ranks", lambda n: 3)  # another rank needs 3
    micro, restore = split_micro_batches(data, BatchPlan(4, None, 8))
    assert sorted(len(mb) for mb in micro) == [1, 1, 2] and sorted(restore.tolist()) == [0, 1, 2, 3]
    monkeypatch.setattr(batching, "max_over_ranks", lambda n: 5)  # more micro-batches than sequences here
    with pytest.raises(RuntimeError, match="this rank has 4 sequences but another needs 5 micro-batches"):
        split_micro_batches(data, BatchPlan(4, None, 8))


# ----------------------------------------------------------------------------------- BatchPlan


def plan(mini=4, n=2, dp=2, micro=1, dynamic=False, budget=64):
    return BatchPlan.for_update(SECTION, mini, n, dp, micro, dynamic, budget)


def test_batch_plan_counts_prompts_globally_and_derives_per_rank_sizes():
    assert plan() == BatchPlan(mini_batch_size=4, micro_batch_size=1, max_token_len=None)  # 4 prompts x 2 / 2 ranks
    assert plan(dynamic=True, micro=None) == BatchPlan(4, None, 64)


def test_batch_plan_mini_batch_not_divisible_by_ranks():
    with pytest.raises(ValueError, match=rf"{SECTION}\.ppo_mini_batch_size=3 x rollout.n=1 = 3 trajectories cannot "
                                         r"be split over 2 ranks; make it a multiple of 2"):
        plan(mini=3, n=1, dp=2)


def test_batch_plan_micro_larger_than_the_ranks_mini_batch():
    with pytest.raises(ValueError, match=rf"{SECTION}\.ppo_micro_batch_size_per_gpu=5 is larger than the 4 "
                                         r"trajectories of one mini-batch on one rank; lower it"):
        plan(micro=5)


def test_batch_plan_without_micro_batch_size_names_both_options():
    expected = rf"set {SECTION}\.ppo_micro_batch_size_per_gpu \(or {SECTION}\.use_dynamic_bsz=true\)"
    with pytest.raises(ValueError, match=expected):
        plan(micro=None)


# ----------------------------------------------------------------------------------- dynamic == fixed

N_PROMPTS, N, BUDGET = 4, 1, 17  # 8 trajectories = 2 mini-batches of 4; sequences of 3..17 tokens


def actor_config(micro, dynamic, mini=N_PROMPTS):
    return {
        "model": {"enable_gradient_checkpointing": False},
        "actor": {"ppo_mini_batch_size": mini, "ppo_micro_batch_size_per_gpu": micro, "use_dynamic_bsz": dynamic,
                  "ppo_max_token_len_per_gpu": BUDGET, "use_kl_loss": True, "entropy_coeff": 0.01, "grad_clip": 100.0,
                  # eps=1 keeps Adam's step linear in the gradient (no sign flips of float-noise gradients)
                  "optim": {"lr": 0.5, "eps": 1.0}},
        "rollout": {"n": N, "prompt_length": 10, "response_length": 7},
    }


def local_actor(model_dir, micro, dynamic, packed=True, mini=N_PROMPTS):
    """One process, no FSDP: the plain update path the sharded runs must reproduce."""
    cfg = from_mapping(ActorRolloutRefConfig, actor_config(micro, dynamic, mini), "actor_rollout_ref.")
    model = load_hf_model(model_dir)
    optimizer = build_optimizer(model, cfg.actor.optim)
    return PPOActor(model, cfg.actor, optimizer, build_lr_scheduler(optimizer, cfg.actor.optim, 4), packed=packed)


def training_batch(make_batch, model_dir):
    data = make_batch(n=2 * N_PROMPTS * N, seed=11)
    g = torch.Generator().manual_seed(1)
    data.batch["advantages"] = torch.randn(len(data), 7, generator=g) * data.batch["response_mask"]
    ref = local_actor(model_dir, 2, False)
    lp, _ = ref.compute_log_prob(data, BatchPlan.for_forward(8, False, 0), temperature=1.0)
    data.batch["old_log_probs"] = lp
    data.batch["ref_log_prob"] = lp - 0.05 * data.batch["response_mask"]  # a non-zero KL term
    return data


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_dynamic_log_probs_and_update_equal_fixed_micro_batches(tiny_model_dir, make_batch, packed):
    data = training_batch(make_batch, tiny_model_dir)
    fixed, dynamic = local_actor(tiny_model_dir, 1, False, packed), local_actor(tiny_model_dir, None, True, packed)
    dyn_plan = BatchPlan.for_forward(None, True, BUDGET)
    micro, _ = split_micro_batches(data, dyn_plan)
    assert 1 < len(micro) < len(data)  # really packed: several sequences per micro-batch, several micro-batches

    lp_fixed, ent_fixed = fixed.compute_log_prob(data, BatchPlan.for_forward(1, False, 0), 1.0, calculate_entropy=True)
    lp_dyn, ent_dyn = dynamic.compute_log_prob(data, dyn_plan, 1.0, calculate_entropy=True)
    torch.testing.assert_close(lp_dyn, lp_fixed, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_dyn, ent_fixed, atol=1e-5, rtol=0)

    before = {k: v.clone() for k, v in fixed.model.state_dict().items()}
    m_fixed = fixed.update_policy(data, plan(N_PROMPTS, N, 1, 1), 1.0)
    m_dyn = dynamic.update_policy(data, plan(N_PROMPTS, N, 1, None, True, BUDGET), 1.0)
    for name, w in fixed.model.state_dict().items():
        torch.testing.assert_close(dynamic.model.state_dict()[name], w, atol=2e-6, rtol=1e-5, msg=name)
        assert not torch.equal(w, before[name]), f"{name} did not change"
    for key in ("actor/pg_loss", "actor/kl_loss", "actor/entropy", "actor/grad_norm"):
        assert m_dyn[key] == pytest.approx(m_fixed[key], rel=1e-5, abs=1e-6), key


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()


def test_two_ranks_dynamic_update_equals_one_process_fixed(ray_cluster, tiny_model_dir, make_batch):
    """FSDP2 over 2 ranks with token-budget micro-batches: the ranks pack their halves into different numbers of
    micro-batches, agree on the larger count, and the update equals one process with micro-batch 1."""
    from verl.single_controller.ray import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup
    from verl.workers.fsdp_workers import ActorRolloutRefWorker

    data = training_batch(make_batch, tiny_model_dir)  # 8 rows: one mini-batch of 8 prompts, 4 rows per rank
    lengths = data.batch["attention_mask"].sum(-1).tolist()
    counts = [len(token_balanced_partitions(lengths[r * 4 : r * 4 + 4], BUDGET)) for r in range(2)]
    assert counts[0] != counts[1], f"the ranks should disagree before agreeing: {counts}"

    reference = local_actor(tiny_model_dir, 1, False, mini=2 * N_PROMPTS)
    m_ref = reference.update_policy(data, plan(2 * N_PROMPTS, N, 1, 1), 1.0)

    cfg = actor_config(None, True, mini=2 * N_PROMPTS)
    cfg["model"]["path"] = tiny_model_dir
    pool = RayResourcePool(process_on_nodes=[2], use_gpu=False)
    wg = RayWorkerGroup(pool, RayClassWithInitArgs(ActorRolloutRefWorker, cfg, role="actor", total_training_steps=4))
    wg.init_model()
    m_dyn = reduce_metrics(dict(wg.update_actor(data).meta_info["metrics"]))  # the ranks' values, gathered by concat
    weights = wg.get_actor_weights()[0]
    for name, w in reference.model.state_dict().items():
        torch.testing.assert_close(weights[name], w, atol=2e-6, rtol=1e-5, msg=name)
    assert m_dyn["actor/pg_loss"] == pytest.approx(m_ref["actor/pg_loss"], abs=1e-6)
    assert m_dyn["actor/grad_norm"] == pytest.approx(m_ref["actor/grad_norm"], rel=1e-5)
    wg.kill()
