"""CPU offload of parameters and optimizer state between phases (``fsdp_config.param_offload`` /
``optimizer_offload``): the offload calls happen around every phase and the results equal a run without offload.

The workers run in this process in a torch.distributed world of one rank (gloo on CPU), so the models really are
FSDP2-sharded modules. On CPU the moves themselves are no-ops: the tests check that the code path runs (who calls
what, in which order) and that it changes nothing; the GPU test checks where the tensors actually live.
"""


import pytest
import torch

from verl.workers import critic as critic_mod
from verl.workers import fsdp_workers
from verl.workers.fsdp import offload_optimizer

ROLLOUT = {"name": "native", "n": 1, "prompt_length": 10, "response_length": 7, "do_sample": False,
           "log_prob_micro_batch_size_per_gpu": 2, "dtype": "float32"}


def record_calls(monkeypatch, module, calls):
    """Wrap ``module.offload_model`` / ``offload_optimizer`` (the real functions still run) to log each call."""
    for name in ("offload_model", "offload_optimizer"):
        real = getattr(module, name)

        def spy(target, to_cpu, device, _real=real, _name=name):
            calls.append((_name, "to_cpu" if to_cpu else "to_device"))
            return _real(target, to_cpu, device)

        monkeypatch.setattr(module, name, spy)


def policy(model_dir, offload):
    fsdp = {"param_offload": offload, "optimizer_offload": offload}
    worker = fsdp_workers.ActorRolloutRefWorker({
        "model": {"path": model_dir, "enable_gradient_checkpointing": False},
        "actor": {"ppo_mini_batch_size": 4, "ppo_micro_batch_size_per_gpu": 2, "fsdp_config": fsdp,
                  "optim": {"lr": 1e-2}},
        "rollout": ROLLOUT,
    }, role="actor_rollout", total_training_steps=4)
    worker.init_model()
    return worker


def prompts_of(batch):
    prompts = batch.select(batch_keys=["prompts"]).rename("prompts", "input_ids")
    mask = (prompts.batch["input_ids"] != 0).long()
    prompts.batch["attention_mask"] = mask
    prompts.batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    return prompts


def run_policy_phases(worker, make_batch):
    """Two training steps (the second moves optimizer state that exists), then greedy generation from the
    updated weights (the hybrid engine's weight sync loads the parameters back)."""
    outputs = []
    for step in range(2):
        data = make_batch(n=4, seed=20 + step)
        data.batch["advantages"] = torch.linspace(-1, 1, 4)[:, None] * data.batch["response_mask"]
        data = data.union(worker.compute_log_prob(data))
        outputs.append(data.batch["old_log_probs"])
        outputs.append(worker.update_actor(data).meta_info["metrics"])
    outputs.append(worker.generate_sequences(prompts_of(make_batch(n=4, seed=30))).batch["responses"])
    return outputs


def without_timings(metrics):
    return {k: v for k, v in metrics.items() if not k.startswith("perf/")}


def test_policy_offload_runs_around_every_phase_and_changes_nothing(one_rank_world, tiny_model_dir, make_batch, monkeypatch):
    from torch.distributed.fsdp import FSDPModule

    calls = []
    record_calls(monkeypatch, fsdp_workers, calls)
    plain = policy(tiny_model_dir, offload=False)
    assert isinstance(plain.actor_module, FSDPModule)
    expected = run_policy_phases(plain, make_batch)
    assert calls == [], "no offload calls without offload"

    offloaded = policy(tiny_model_dir, offload=True)
    assert calls == [("offload_model", "to_cpu"), ("offload_optimizer", "to_cpu")]  # parked after init_model
    calls.clear()
    got = run_policy_phases(offloaded, make_batch)
    load_params, park_both = [("offload_model", "to_device")], [("offload_model", "to_cpu"), ("offload_optimizer", "to_cpu")]
    load_both = [("offload_model", "to_device"), ("offload_optimizer", "to_device")]
    step = load_params + park_both + load_both + park_both  # compute_log_prob, then update_actor
    assert calls == step + step + load_params + park_both  # ... twice, then the weight sync before generation

    for a, b in zip(got, expected):
        if isinstance(a, dict):  # metrics: all but the timings
            assert without_timings(a) == without_timings(b)
        else:
            assert torch.equal(a, b)
    for (name, w_a), w_b in zip(plain.actor_module.state_dict().items(), offloaded.actor_module.state_dict().values()):
        assert torch.equal(w_a.full_tensor(), w_b.full_tensor()), name
    state = offloaded.optimizer.state
    assert state and all(s["exp_avg"].device.type == "cpu" for s in state.values())


def test_critic_offload_gives_the_same_update(one_rank_world, tiny_model_dir, make_batch, monkeypatch):
    calls = []
    record_calls(monkeypatch, critic_mod, calls)
    results = []
    for offload in (False, True):
        fsdp = {"param_offload": offload, "optimizer_offload": offload}
        worker = critic_mod.CriticWorker({"ppo_mini_batch_size": 4, "ppo_micro_batch_size_per_gpu": 2, "optim": {"lr": 1e-2},
                                          "model": {"fsdp_config": fsdp}}, rollout_n=1, total_training_steps=2,
                                         model_path=tiny_model_dir)
        torch.manual_seed(0)  # the value head is freshly initialised: the same head for both workers
        worker.init_model()
        data = make_batch(n=4, seed=40)
        data.batch["returns"] = torch.ones(4, 7) * data.batch["response_mask"]
        values = worker.compute_values(data).batch["values"]
        data.batch["values"] = values
        metrics = worker.update_critic(data).meta_info["metrics"]
        results.append((values, metrics["critic/vf_loss"], worker.compute_values(data).batch["values"]))
    assert calls.count(("offload_model", "to_device")) == 3 and calls.count(("offload_optimizer", "to_cpu")) == 4
    (v0, loss0, after0), (v1, loss1, after1) = results
    assert torch.equal(v0, v1) and loss0 == loss1 and torch.equal(after0, after1)
    assert not torch.equal(v0, after0), "the update changed the values"


def test_offload_optimizer_moves_moments_and_keeps_the_step_counter():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    offload_optimizer(opt, to_cpu=False, device=torch.device("meta"))  # "meta" stands in for an accelerator here
    for state in opt.state.values():
        assert state["exp_avg"].is_meta and state["exp_avg_sq"].is_meta
        assert not state["step"].is_meta and float(state["step"]) == 1.0  # AdamW keeps its step on the host


@pytest.mark.gpu
def test_offloaded_tensors_live_on_the_host_between_phases(one_rank_world, tiny_model_dir, make_batch):
    worker = policy(tiny_model_dir, offload=True)

    def devices():
        params = {p.to_local().device.type for p in worker.actor_module.parameters()}
        moments = {s["exp_avg"].to_local().device.type for s in worker.optimizer.state.values()}
        return params, moments

    assert devices() == ({"cpu"}, set())
    run_policy_phases(worker, make_batch)
    assert devices() == ({"cpu"}, {"cpu"})
    assert worker.device.type != "cpu"
