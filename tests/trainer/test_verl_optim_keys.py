"""verl's optimizer and FSDP keys act: ``optim.optimizer`` / ``optimizer_impl`` / ``override_optimizer_config``,
``lr_scheduler_type`` and its older spellings, ``fsdp_config.forward_prefetch`` and ``fsdp_config.seed``."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn

from verl.trainer.config import load_config, validate_config
from verl.utils.config import ConfigError
from verl.workers.config import FSDPConfig, OptimConfig
from verl.workers.fsdp import apply_fsdp2, build_lr_scheduler, build_optimizer


def test_optimizer_class_and_overrides():
    model = nn.Linear(4, 2)
    opt = build_optimizer(model, OptimConfig(optimizer="SGD", lr=0.1, override_optimizer_config={"momentum": 0.5}))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.5 and opt.defaults["lr"] == 0.1
    opt = build_optimizer(model, OptimConfig(betas=[0.8, 0.9]))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.9)
    base = ["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", "critic.ppo_micro_batch_size_per_gpu=4"]
    with pytest.raises(ConfigError, match="actor_rollout_ref.actor.optim.optimizer='Adamm' is not a class"):
        validate_config(load_config([*base, "actor_rollout_ref.actor.optim.optimizer=Adamm"]), check_environment=False)


@pytest.mark.parametrize("keys", [{"lr_scheduler_type": "cosine"}, {"warmup_style": "cosine"},
                                  {"lr_decay_style": "cosine"}, {"lr_scheduler_type": "constant", "warmup_style": "cosine"}])
def test_cosine_schedule_from_any_spelling(keys):
    opt = build_optimizer(nn.Linear(2, 2), OptimConfig(lr=1.0, min_lr_ratio=0.0, **keys))
    sched = build_lr_scheduler(opt, OptimConfig(lr=1.0, **keys), total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.5, abs=1e-6), "half-way down a half cosine"


@pytest.fixture()
def one_rank_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_forward_prefetch_links_each_layer_to_the_next(one_rank_group):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer
    from verl.workers.fsdp import load_hf_model

    path = build_tiny_model(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"prefetch_{os.getpid()}"),
                            build_tiny_tokenizer(), arch="qwen2", num_layers=3, seed=0)
    ids = torch.tensor([[1, 2, 3, 4]])
    outputs = []
    for prefetch in (False, True):
        model = apply_fsdp2(load_hf_model(path), FSDPConfig(forward_prefetch=prefetch), world_size=1)
        layers = [m for m in model.modules() if m is not model and hasattr(m, "_get_fsdp_state")]  # sharded layers
        linked = [layer._get_fsdp_state()._states_to_forward_prefetch for layer in layers]
        assert [len(x) for x in linked] == ([1, 1, 0] if prefetch else [0, 0, 0])
        outputs.append(model(input_ids=ids).logits)
    assert torch.equal(outputs[0], outputs[1]), "prefetching changes only when weights are gathered"


def test_fsdp_seed_initialises_missing_weights(tmp_path):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer
    from verl.workers.fsdp import load_hf_model

    path = build_tiny_model(tmp_path / "m", build_tiny_tokenizer(), arch="qwen2", num_layers=1, seed=0)
    heads = [load_hf_model(path, kind="value", init_seed=s).score.weight for s in (1, 1, 2)]
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])
