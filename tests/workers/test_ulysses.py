"""Ulysses sequence parallelism: 2 gloo ranks splitting each packed row give the single-rank log-probs, entropies,
values and gradients (fp32, tiny model), and bad sizes are refused naming the key."""

from __future__ import annotations

import os
import re

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.workers.conftest import rollout_batch
from verl.workers.fsdp import load_hf_model
from tests.helpers.net import free_port



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
        _sft_parity(model, sp)
        _values_parity(model_dir, batch, sp)
    finally:
        dist.destroy_process_group()


def _values_parity(model_dir: str, batch: dict, sp) -> None:
    """The critic's per-token values (a token-classification head: no ``logits_to_keep``) under SP == one rank."""
    from verl.workers.attention import use_packed_attention
    from verl.workers.forward import response_layout, response_values

    critic = load_hf_model(model_dir, kind="value")
    use_packed_attention(critic, force=True)
    results = []
    for group in (None, sp):
        critic.zero_grad(set_to_none=True)
        values = response_values(critic, response_layout(batch, 7, True, sp=group), 7, packed=True)
        values.pow(2).sum().backward()
        grads = _grads(critic)
        if group is not None:
            for t in grads.values():
                dist.all_reduce(t)
        results.append((values.detach(), grads))
    (v1, g1), (v2, g2) = results
    torch.testing.assert_close(v2, v1, atol=1e-5, rtol=0)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-5, rtol=1e-4, msg=name)


def _sft_parity(model, sp) -> None:
    """The SFT loss's target log-probs (right-padded rows, packed) and their gradients under SP == one rank."""
    from verl.trainer.sft.loss import target_log_probs

    g = torch.Generator().manual_seed(5)
    lengths = torch.tensor([11, 6, 9])  # 26 tokens: padded to 26 + 0, but 25 targets spread unevenly
    attention_mask = (torch.arange(12)[None] < lengths[:, None]).long()  # (3, 12) right-padded
    batch = {"input_ids": torch.randint(3, 300, (3, 12), generator=g) * attention_mask,
             "attention_mask": attention_mask, "position_ids": torch.arange(12).expand(3, -1).clone(),
             "loss_mask": (torch.arange(12)[None] >= 3).long().expand(3, -1).clone()}
    results = []
    for group in (None, sp):
        model.zero_grad(set_to_none=True)
        lp = target_log_probs(model, batch, packed=True, sp=group)
        (lp * torch.linspace(0.5, 1.5, lp.shape[0])).sum().backward()
        grads = _grads(model)
        if group is not None:
            for t in grads.values():
                dist.all_reduce(t)
        results.append((lp.detach(), grads))
    (lp1, g1), (lp2, g2) = results
    torch.testing.assert_close(lp2, lp1, atol=1e-5, rtol=0)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def four_kv_heads_model_dir(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    return build_tiny_model(tmp_path_factory.mktemp("tiny_mha"), build_tiny_tokenizer(), num_layers=1, num_heads=4,
                            num_kv_heads=4, seed=1)


@pytest.mark.parametrize("sp", [2, 4])
def test_sp_matches_one_rank_log_probs_entropy_and_gradients(sp, tiny_model_dir, request):
    """SP=2 on the GQA model (4 query heads, 2 key/value heads); SP=4 on a model with 4 key/value heads."""
    model_dir = tiny_model_dir if sp == 2 else request.getfixturevalue("four_kv_heads_model_dir")
    mp.start_processes(_sp_parity, args=(sp, free_port(), model_dir), nprocs=sp, start_method="fork")


def _policy_run(rank: int, world: int, sp: int, port: int, cfg: dict, data, out: str) -> None:
    """One rank of a policy worker group (no Ray: the worker joins the gloo group from its environment). It gets
    its data-parallel group's chunk, as the mesh dispatch sends it; the collected ranks save their log-probs, rank
    0 also the metrics and weights after one update."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from tests.workers.test_fsdp_workers import prepared
    from verl.workers.fsdp_workers import ActorRolloutRefWorker

    worker = ActorRolloutRefWorker(cfg, role="actor_rollout_ref", total_training_steps=4)
    dp_rank, is_collect = worker._dispatch_info["actor"]
    assert (dp_rank, is_collect) == (rank // sp, rank % sp == 0)
    try:
        worker.init_model()
        data = prepared(worker, data.chunk(world // sp)[dp_rank])  # the SP ranks of a group: the same chunk
        metrics = worker.update_actor(data).meta_info["metrics"]
        weights = worker.get_actor_weights()
        if is_collect:
            torch.save({"data": data, "metrics": metrics, "weights": weights}, f"{out}.{dp_rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world, sp", [(2, 2), (4, 2)])
def test_policy_worker_sp_equals_one_rank(world, sp, tiny_model_dir, make_batch, tmp_path):
    """A worker group of ``world`` ranks in SP groups of ``sp`` (data-parallel size ``world / sp``) gives one rank's
    log-probs, reference log-probs, loss, gradient norm and weights after one PPO update."""
    from tests.workers.test_fsdp_workers import policy_config, training_batch

    results = []
    for ranks, degree in ((1, 1), (world, sp)):
        cfg = policy_config(tiny_model_dir, micro_batch=2, ulysses_sequence_parallel_size=degree)
        cfg["ref"] = {"ulysses_sequence_parallel_size": degree}
        results.append(policy_group_update(ranks, degree, cfg, training_batch(make_batch), tmp_path / f"w{ranks}.pt"))
    assert_same_update(*results, tiny_model_dir)


def policy_group_update(ranks: int, group: int, cfg: dict, data, out) -> dict:
    """One PPO update by a policy worker group of ``ranks`` ranks in groups of ``group`` (fed once per group):
    the concatenated data with log-probs, and the metrics and weights after the update."""
    from verl import DataProto

    out = str(out)
    mp.start_processes(_policy_run, args=(ranks, group, free_port(), cfg, data, out), nprocs=ranks,
                       start_method="fork")
    parts = [torch.load(f"{out}.{r}", weights_only=False) for r in range(ranks // group)]
    return {"data": DataProto.concat([p["data"] for p in parts]), "metrics": parts[0]["metrics"],
            "weights": parts[0]["weights"]}


def assert_same_update(one: dict, many: dict, model_dir) -> None:
    """Two :func:`policy_group_update` results agree: log-probs, reference log-probs, every weight (each changed by
    the update), loss and gradient norm."""
    for key in ("old_log_probs", "ref_log_prob"):
        torch.testing.assert_close(many["data"].batch[key], one["data"].batch[key], atol=1e-5, rtol=0)
    before = load_hf_model(model_dir).state_dict()
    for name, w in one["weights"].items():
        torch.testing.assert_close(many["weights"][name], w, atol=1e-5, rtol=1e-5, msg=f"{name} differs")
        assert not torch.equal(w, before[name]), f"{name} did not change"
    assert many["metrics"]["actor/pg_loss"] == pytest.approx(one["metrics"]["actor/pg_loss"], abs=1e-6)
    assert many["metrics"]["actor/grad_norm"] == pytest.approx(one["metrics"]["actor/grad_norm"], rel=1e-5)


def _validate(model_dir, tmp_path, *extra):
    from verl.trainer.config import load_config, validate_config

    train = tmp_path / "train.parquet"
    train.touch()
    validate_config(load_config([
        f"data.train_files={train}", f"actor_rollout_ref.model.path={model_dir}", "trainer.device=cpu",
        "trainer.n_gpus_per_node=4", "data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1", "actor_rollout_ref.rollout.name=native",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1", "algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=2", *extra]))


@pytest.mark.parametrize("extra, error", [
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"], None),
    # 1 prompt x 2 responses over 4 ranks do not split; over 4 / sp = 2 data-parallel ranks they do
    ([], "do not split over 4 ranks (data-parallel"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=4"],
     "actor_rollout_ref.actor.ulysses_sequence_parallel_size=4 must divide the model's 4 attention heads and 2"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=3"],
     "actor_rollout_ref.actor.ulysses_sequence_parallel_size=3 must divide the 4 ranks"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2", "actor_rollout_ref.model.use_remove_padding=false"],
     "set actor_rollout_ref.model.use_remove_padding=true"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2", "actor_rollout_ref.ref.ulysses_sequence_parallel_size=1"],
     "actor_rollout_ref.ref.ulysses_sequence_parallel_size=1 disagrees"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2", "reward_model.ulysses_sequence_parallel_size=2"],
     "reward_model.ulysses_sequence_parallel_size=2 is not supported"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2", "algorithm.adv_estimator=gae",
      "critic.ppo_micro_batch_size_per_gpu=1", "critic.ppo_mini_batch_size=1", "critic.ulysses_sequence_parallel_size=4"],
     "critic.ulysses_sequence_parallel_size=4 must divide the model's"),
])
def test_config_checks(tiny_model_dir, tmp_path, extra, error):
    from verl.utils.config import ConfigError

    if error is None:
        _validate(tiny_model_dir, tmp_path, *extra)
    else:
        with pytest.raises(ConfigError, match=re.escape(error)):
            _validate(tiny_model_dir, tmp_path, *extra)
