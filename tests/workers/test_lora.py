"""LoRA on the policy worker (``actor_rollout_ref.model.lora_rank > 0``), in a one-rank torch.distributed world in
this process (the model really is FSDP2-sharded, frozen base and trainable adapters in the same groups).

Checks: only the adapters train (every one of them moves, nothing else does, the optimizer holds nothing else);
the reference log-probs are the base model's, exactly; the rollout generates what peft's ``merge_and_unload``
model generates; the saved adapter loads with ``PeftModel.from_pretrained`` and gives the actor's logits; resume
equals an uninterrupted run; the optimizer + gradient memory of LoRA is under a quarter of full fine-tuning's.
"""

import json
import os

import pytest
import torch

from verl.workers import fsdp_workers
from verl.workers.lora import ADAPTER_DIR, is_lora_name

ROLLOUT = {"name": "native", "n": 1, "prompt_length": 10, "response_length": 7, "do_sample": False,
           "log_prob_micro_batch_size_per_gpu": 2, "dtype": "float32"}
LORA = {"lora_rank": 4, "lora_alpha": 8}


def policy(model_dir, lora=LORA, **model):
    worker = fsdp_workers.ActorRolloutRefWorker({
        "model": {"path": model_dir, "enable_gradient_checkpointing": True, **lora, **model},
        "actor": {"ppo_mini_batch_size": 4, "ppo_micro_batch_size_per_gpu": 2, "use_kl_loss": True, "grad_clip": 100.0,
                  "optim": {"lr": 0.05, "eps": 1.0}},
        "ref": {"log_prob_micro_batch_size_per_gpu": 3},
        "rollout": ROLLOUT,
    }, role="actor_rollout_ref", total_training_steps=4)
    worker.init_model()
    return worker


def prompts_of(batch):
    prompts = batch.select(batch_keys=["prompts"]).rename("prompts", "input_ids")
    mask = (prompts.batch["input_ids"] != 0).long()
    prompts.batch["attention_mask"] = mask
    prompts.batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    return prompts


def train_step(worker, make_batch, seed):
    data = make_batch(n=4, seed=seed)
    data.batch["advantages"] = torch.linspace(-1, 1, 4)[:, None] * data.batch["response_mask"]
    data = data.union(worker.compute_ref_log_prob(data))
    return worker.update_actor(data).meta_info["metrics"]


def named_params(worker):
    return {n: p.detach().full_tensor().clone() for n, p in worker.actor_module.named_parameters()}


def adapters(worker):
    return {n: t for n, t in named_params(worker).items() if is_lora_name(n)}


@pytest.fixture(scope="module")
def trained(one_rank_world, tiny_model_dir, make_batch_module):
    """A LoRA policy before and after two updates."""
    worker = policy(tiny_model_dir)
    before = named_params(worker)
    metrics = [train_step(worker, make_batch_module, seed) for seed in (20, 21)]
    return worker, before, metrics


@pytest.fixture(scope="module")
def make_batch_module():
    """This directory's ``rollout_batch`` helper for module-scoped fixtures (``make_batch`` is per test)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_workers_conftest", os.path.join(os.path.dirname(__file__), "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rollout_batch


def test_only_the_adapters_train_and_every_one_moves(trained):
    worker, before, metrics = trained
    after = named_params(worker)
    lora = [n for n in after if is_lora_name(n)]
    assert len(lora) == 2 * 7 * 2  # A and B of 7 linear layers in each of 2 decoder layers
    for name, value in after.items():
        if is_lora_name(name):
            assert not torch.equal(value, before[name]), f"adapter {name} did not change"
        else:
            assert torch.equal(value, before[name]), f"frozen {name} changed"
    trainable = {id(p) for p in worker.actor_module.parameters() if p.requires_grad}
    names = {id(p): n for n, p in worker.actor_module.named_parameters()}
    assert {names[i] for i in trainable} == set(lora)
    optimized = [p for group in worker.optimizer.param_groups for p in group["params"]]
    assert {names[id(p)] for p in optimized} == set(lora), "the optimizer holds the adapters only"
    assert {names[id(p)] for p in worker.optimizer.state} == set(lora)
    assert all(m["actor/kl_loss"] >= 0 for m in metrics) and metrics[1]["actor/kl_loss"] > 0


def test_reference_is_the_base_model_exactly(trained, tiny_model_dir, make_batch):
    """The actor with adapters disabled gives the base model's log-probs bit for bit (adapters are non-zero)."""
    from verl.workers.actor import PPOActor
    from verl.workers.batching import BatchPlan
    from verl.workers.config import ActorConfig
    from verl.workers.fsdp import apply_fsdp2, load_hf_model
    from verl.workers.config import FSDPConfig

    worker = trained[0]
    assert not hasattr(worker, "ref"), "no second model is loaded"
    data = make_batch(n=5, seed=3)
    ref = worker.compute_ref_log_prob(data).batch["ref_log_prob"]
    base = apply_fsdp2(load_hf_model(tiny_model_dir).eval(), FSDPConfig(), 1)
    expected, _ = PPOActor(base, ActorConfig()).compute_log_prob(data, BatchPlan.for_forward(3, False, 0), 1.0)
    assert torch.equal(ref, expected)
    actor = worker.compute_log_prob(data).batch["old_log_probs"]
    assert not torch.allclose(actor, ref), "the trained adapters change the policy"


def test_rollout_equals_peft_merge_and_adapter_loads_with_peft(trained, tiny_model_dir, make_batch, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    worker = trained[0]
    before = adapters(worker)
    ckpt = str(tmp_path / "actor")
    worker.save_checkpoint(ckpt)
    adapter_dir = os.path.join(ckpt, ADAPTER_DIR)
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        saved = json.load(f)
    assert saved["r"] == 4 and saved["lora_alpha"] == 8 and saved["base_model_name_or_path"] == tiny_model_dir

    # the adapter in peft's format: PeftModel gives the actor's log-probs
    data = make_batch(n=4, seed=7)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter_dir).eval()
    with torch.no_grad():
        logits = peft_model(input_ids=data.batch["input_ids"], attention_mask=data.batch["attention_mask"],
                            position_ids=data.batch["position_ids"]).logits[:, -8:-1]
    expected = torch.log_softmax(logits, -1).gather(-1, data.batch["responses"][..., None]).squeeze(-1)
    mask = data.batch["response_mask"].bool()
    got = worker.compute_log_prob(data).batch["old_log_probs"]
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=0)

    # greedy rollout (merged weights) == merge_and_unload's greedy generation, token for token
    merged = peft_model.merge_and_unload()
    prompts = prompts_of(make_batch(n=4, seed=30))
    out = worker.generate_sequences(prompts)
    for i in range(len(prompts)):
        ids = prompts.batch["input_ids"][i][prompts.batch["attention_mask"][i].bool()][None]
        gen = merged.generate(ids, max_new_tokens=7, do_sample=False, eos_token_id=merged.config.eos_token_id,
                              pad_token_id=0)[0, ids.shape[1]:]
        n = int(out.batch["response_mask"][i].sum())
        assert out.batch["responses"][i, :n].tolist() == gen[:n].tolist()
    for name, value in adapters(worker).items():  # merging for the rollout left the trained tensors alone
        assert torch.equal(value, before[name]), name
    # a new actor started from the saved adapter (lora_adapter_path; rank and alpha from its config) continues
    # from it: the same policy
    started = policy(tiny_model_dir, lora={"lora_adapter_path": adapter_dir})
    assert started.lora.rank == 4 and started.lora.alpha == 8
    torch.testing.assert_close(started.compute_log_prob(data).batch["old_log_probs"], got, atol=1e-6, rtol=0)
    assert all(p.requires_grad for n, p in started.actor_module.named_parameters() if is_lora_name(n))
    weights = worker.get_actor_weights()
    assert not any(is_lora_name(n) or "base_layer" in n for n in weights), "the base model's names"
    for name, value in merged.state_dict().items():
        if name in weights:
            torch.testing.assert_close(weights[name], value, atol=1e-6, rtol=0, msg=name)


def test_resume_equals_uninterrupted(one_rank_world, tiny_model_dir, make_batch, tmp_path):
    straight = policy(tiny_model_dir)
    for seed in (40, 41):
        train_step(straight, make_batch, seed)
    first = policy(tiny_model_dir)
    train_step(first, make_batch, 40)
    first.save_checkpoint(str(tmp_path / "actor"))
    resumed = policy(tiny_model_dir)
    resumed.load_checkpoint(str(tmp_path / "actor"))
    train_step(resumed, make_batch, 41)
    want, got = adapters(straight), adapters(resumed)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_lora_optimizer_and_gradient_memory_is_under_a_quarter():
    """Measured (one real AdamW step, bytes summed from the tensors) on a model with the proportions of a small LLM
    (hidden 256, 4 layers, MLP 768) at rank 16: ``benchmarks/lora_memory.py --measure``, whose figures
    docs/performance.md records."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from benchmarks.lora_memory import measure

    row = measure(rank=16)
    assert row["ratio"] < 0.25, row


def test_bad_targets_are_a_config_error_naming_the_key(tiny_model_dir):
    from verl.workers.config import ModelConfig
    from verl.workers.lora import LoraSpec, describe_lora

    spec = LoraSpec.from_model_config(ModelConfig(lora_rank=8, target_modules=["qq_proj"]), "actor_rollout_ref.model")
    with pytest.raises(ValueError, match=r"actor_rollout_ref\.model\.target_modules=\[qq_proj\]"):
        describe_lora(tiny_model_dir, spec)
    with pytest.raises(ValueError, match="lora_alpha"):
        LoraSpec.from_model_config(ModelConfig(lora_rank=8, lora_alpha=0), "actor_rollout_ref.model")
    spec = LoraSpec.from_model_config(ModelConfig(lora_rank=8, target_modules="q_proj,v_proj", exclude_modules="v_proj"),
                                      "actor_rollout_ref.model")
    summary = describe_lora(tiny_model_dir, spec)
    assert summary.module_kinds == ("q_proj",) and summary.num_modules == 2
    assert "2 linear layers (q_proj)" in str(summary) and "trainable of" in str(summary)


def test_use_shm_copies_the_model_directory_once_to_shared_memory(tiny_model_dir):
    import shutil

    from verl.utils.fs import copy_to_local

    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    path = copy_to_local(tiny_model_dir, use_shm=True)
    try:
        assert path.startswith("/dev/shm/verl-cache/") and path != tiny_model_dir
        assert sorted(os.listdir(path)) == sorted(os.listdir(tiny_model_dir))
        assert copy_to_local(tiny_model_dir, use_shm=True) == path, "copied once"
        assert copy_to_local(tiny_model_dir) == tiny_model_dir
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
