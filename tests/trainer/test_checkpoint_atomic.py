"""Checkpoints are published atomically: a crash mid-save leaves the previous checkpoint and pointer usable.

The driver's real ``RayPPOTrainer.save_checkpoint`` / ``load_checkpoint`` run here against an in-process
stand-in of the policy worker group that writes its part with the workers' real sharded-checkpoint code
(``verl.workers.fsdp.save_checkpoint``: DCP model and optimizer, per-rank extra state) for a small module.
"""

import hashlib
import os

import pytest
import torch

from verl.data.sampler import StatefulDataLoader
from verl.trainer.config import load_config
from verl.trainer.ppo.checkpoint import (
    LATEST_FILE,
    CheckpointDirs,
    find_latest_checkpoint,
    prune_checkpoints,
    publish_checkpoint,
)
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.workers import fsdp as fsdp_ckpt

CONTENTS = ["model", "optimizer", "extra"]


class LocalPolicyGroup:
    """What the trainer calls on ``actor_rollout_wg`` for checkpoints, on one in-process rank."""

    def __init__(self, seed: int):
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(4, 3)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=0.1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0 / (1 + step))

    def train_step(self) -> None:
        loss = self.model(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def save_checkpoint(self, local_path: str, global_step: int = 0) -> None:
        fsdp_ckpt.save_checkpoint(local_path, self.model, self.optimizer, self.scheduler, CONTENTS, 0, 1)

    def load_checkpoint(self, local_path: str) -> None:
        fsdp_ckpt.load_checkpoint(local_path, self.model, self.optimizer, self.scheduler, CONTENTS, 0, 1)


def make_trainer(root, seed: int = 0, keep=None) -> RayPPOTrainer:
    config = load_config(["algorithm.adv_estimator=grpo", f"trainer.default_local_dir={root}",
                          f"trainer.max_actor_ckpt_to_keep={'null' if keep is None else keep}"])
    loader = StatefulDataLoader([{"row": torch.tensor([i])} for i in range(16)], batch_size=2)
    trainer = RayPPOTrainer(config, None, None, None, loader)
    trainer.actor_rollout_wg = LocalPolicyGroup(seed)
    return trainer


def run_steps(trainer: RayPPOTrainer, n: int) -> None:
    """What fit() does between checkpoints, as far as the checkpointed state is concerned."""
    for _ in range(n):
        trainer.global_steps += 1
        trainer._next_batch()
        trainer.actor_rollout_wg.train_step()


def tree_digest(path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.mark.parametrize("crash_in", ["extra_state", "trainer_state.pt"],
                         ids=["inside the actor part", "after the actor part"])
def test_crash_mid_save_keeps_previous_checkpoint_resumable(tmp_path, monkeypatch, crash_in):
    trainer = make_trainer(tmp_path)
    run_steps(trainer, 1)
    step1 = trainer.save_checkpoint()
    weights1, loader1 = trainer.actor_rollout_wg.weights(), trainer.train_dataloader.state_dict()
    digest1 = tree_digest(step1)
    assert {"actor/model/.metadata", "actor/optim/.metadata", "actor/extra_state_world_size_1_rank_0.pt",
            "trainer_state.pt"} <= set(digest1)

    run_steps(trainer, 1)
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        if crash_in in str(f):
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        trainer.save_checkpoint()
    monkeypatch.setattr(torch, "save", real_save)

    assert (tmp_path / LATEST_FILE).read_text() == "1"
    assert not (tmp_path / "global_step_2").exists(), "a partial checkpoint was published"
    assert (tmp_path / "global_step_2.tmp").exists(), "the crash really happened midway"
    assert find_latest_checkpoint(str(tmp_path)) == step1
    assert tree_digest(step1) == digest1, "the previous checkpoint was modified"

    resumed = make_trainer(tmp_path, seed=123)
    assert any(not torch.equal(resumed.actor_rollout_wg.weights()[k], weights1[k]) for k in weights1)
    resumed.load_checkpoint()
    assert resumed.global_steps == 1 and resumed.train_dataloader.state_dict() == loader1
    for name, tensor in resumed.actor_rollout_wg.weights().items():
        assert torch.equal(tensor, weights1[name]), name

    run_steps(resumed, 1)
    step2 = resumed.save_checkpoint()  # the leftover .tmp of the crashed save is replaced
    assert step2.endswith("global_step_2") and (tmp_path / LATEST_FILE).read_text() == "2"
    assert not (tmp_path / "global_step_2.tmp").exists()


def test_resave_of_a_step_replaces_it_whole(tmp_path):
    trainer = make_trainer(tmp_path)
    run_steps(trainer, 1)
    trainer.save_checkpoint()
    trainer.actor_rollout_wg.train_step()
    path = trainer.save_checkpoint()
    assert sorted(os.listdir(tmp_path)) == ["global_step_1", LATEST_FILE]
    fresh = make_trainer(tmp_path, seed=5)
    fresh.load_checkpoint()
    for name, tensor in fresh.actor_rollout_wg.weights().items():
        assert torch.equal(tensor, trainer.actor_rollout_wg.weights()[name]), name
    assert path.endswith("global_step_1")


def test_trainer_keeps_the_newest_max_actor_ckpt_to_keep(tmp_path):
    trainer = make_trainer(tmp_path, keep=2)
    for _ in range(3):
        run_steps(trainer, 1)
        trainer.save_checkpoint()
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("global_step")) == ["global_step_2", "global_step_3"]
    assert find_latest_checkpoint(str(tmp_path)).endswith("global_step_3")


def test_prune_orders_steps_numerically_and_leaves_other_entries(tmp_path):
    for name in ("global_step_1", "global_step_2", "global_step_5", "global_step_10", "global_step_11.tmp", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / LATEST_FILE).write_text("10")
    assert prune_checkpoints(str(tmp_path), None) == [] and prune_checkpoints(str(tmp_path), 0) == []
    removed = prune_checkpoints(str(tmp_path), 2)
    assert sorted(os.path.basename(p) for p in removed) == ["global_step_1", "global_step_2"]
    left = sorted(os.listdir(tmp_path))
    assert left == ["global_step_10", "global_step_11.tmp", "global_step_5", LATEST_FILE, "notes"]


def test_find_latest_checkpoint_pointer_cases(tmp_path):
    assert find_latest_checkpoint(str(tmp_path)) is None  # a fresh directory: nothing to resume
    assert find_latest_checkpoint(str(tmp_path / "missing")) is None
    (tmp_path / LATEST_FILE).write_text("7")
    with pytest.raises(FileNotFoundError, match="names step 7 but .*global_step_7 is missing.*resume_mode=disable"):
        find_latest_checkpoint(str(tmp_path))
    (tmp_path / LATEST_FILE).write_text("step seven")
    with pytest.raises(ValueError, match="should hold a step number, found 'step seven'"):
        find_latest_checkpoint(str(tmp_path))
    (tmp_path / "global_step_7").mkdir()
    (tmp_path / LATEST_FILE).write_text("7\n")
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "global_step_7")


def test_publish_checkpoint_moves_the_pointer_last(tmp_path):
    seen = []

    def write(dirs: CheckpointDirs) -> None:
        seen.append(os.path.exists(tmp_path / LATEST_FILE))
        with open(dirs.part("state.txt"), "w") as f:
            f.write("x")

    path = publish_checkpoint(CheckpointDirs(str(tmp_path), 3), write)
    assert seen == [False] and path == str(tmp_path / "global_step_3")
    assert (tmp_path / "global_step_3" / "state.txt").read_text() == "x"
    assert (tmp_path / LATEST_FILE).read_text() == "3"
