"""``FSDPSFTTrainer``: supervised fine-tuning of a causal LM with FSDP2, one SPMD process per rank.

Each step takes a global batch of ``data.train_batch_size`` conversations (the same on every world size: rank
``r`` trains on its contiguous slice), runs micro-batches, and takes one AdamW step on the token-mean NLL of
the assistant tokens (:mod:`verl.trainer.sft.loss`). The data order is a pure function of ``trainer.seed`` and
the step, so a resumed run continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Subset

from verl.data.sft_dataset import SFTDataset, sft_collate_fn
from verl.protocol import DataProto
from verl.trainer.sft.checkpoint import find_latest_checkpoint, save_step_atomically, step_of
from verl.trainer.sft.config import SFTConfig
from verl.trainer.sft.loss import sft_loss, target_log_probs, target_mask
from verl.utils.config import to_dict
from verl.utils.device import get_device
from verl.workers.attention import use_packed_attention
from verl.workers.batching import BatchPlan, split_micro_batches
from verl.workers.lora import LoraSpec, lora_summary
from verl.workers.parallel.ulysses import check_heads, make_ulysses_group
from verl.workers.fsdp import (
    build_lr_scheduler,
    build_optimizer,
    build_sharded_model,
    clip_grad_norm,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["FSDPSFTTrainer", "epoch_order", "rank_slice"]

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "loss_mask")


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """``(n,)`` sample order of one epoch: a permutation seeded by ``(seed, epoch)``, or ``arange`` unshuffled."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def rank_slice(indices: torch.Tensor, rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of a global batch's indices (the batch divides by ``world_size``)."""
    per_rank = len(indices) // world_size
    return indices[rank * per_rank : (rank + 1) * per_rank].tolist()


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


class FSDPSFTTrainer:
    """Supervised fine-tuning.

    Args:
        config: the validated :class:`SFTConfig`.
        tokenizer: the tokenizer (loaded from ``model.tokenizer_path or model.partial_pretrain`` when None).
        train_dataset, val_dataset: datasets yielding :class:`SFTDataset` items (built from ``data.*`` when None).

    The process group (when any) must be initialised before construction; ranks and world size come from it.
    """

    def __init__(self, config: SFTConfig, tokenizer: Any = None, train_dataset: Any = None, val_dataset: Any = None):
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.config = config.validate(self.world_size)
        # Ulysses sequence parallelism: the ranks of a group share one data-parallel slice of every batch
        self.sp = make_ulysses_group(self.config.ulysses_sequence_parallel_size, "ulysses_sequence_parallel_size")
        self.dp_size, self.dp_rank = self.world_size // self.sp.size, self.sp.dp_rank
        self.device = get_device(int(os.environ.get("LOCAL_RANK", 0)))
        if config.trainer.device not in ("auto", self.device.type):
            raise ValueError(f"trainer.device={config.trainer.device!r} but this machine computes on "
                             f"{self.device.type!r}; set trainer.device=auto")
        torch.manual_seed(config.trainer.seed)
        model_cfg = config.model
        if tokenizer is None:
            from verl.workers.fsdp_workers import load_tokenizer

            tokenizer = load_tokenizer(model_cfg.tokenizer_path or model_cfg.partial_pretrain, model_cfg.trust_remote_code)
        self.tokenizer = tokenizer
        data = config.data
        self.train_dataset = train_dataset if train_dataset is not None else SFTDataset(data.train_files, tokenizer, data)
        if val_dataset is None and data.val_files:
            val_dataset = SFTDataset(data.val_files, tokenizer, data)
        self.val_dataset = val_dataset
        if data.train_max_samples > 0:  # the first N rows, as verl's data.train_max_samples / val_max_samples
            self.train_dataset = Subset(self.train_dataset, range(min(data.train_max_samples, len(self.train_dataset))))
        if self.val_dataset is not None and data.val_max_samples > 0:
            self.val_dataset = Subset(self.val_dataset, range(min(data.val_max_samples, len(self.val_dataset))))
        self.steps_per_epoch = len(self.train_dataset) // data.train_batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"data.train_batch_size={data.train_batch_size} is larger than the {len(self.train_dataset)} "
                             "training samples; lower it")
        self.total_steps = config.trainer.total_training_steps or self.steps_per_epoch * config.trainer.total_epochs
        self.plan = BatchPlan(data.train_batch_size // self.dp_size,
                              None if data.use_dynamic_bsz else data.micro_batch_per_gpu(self.dp_size),
                              data.max_token_len_per_gpu * self.sp.size if data.use_dynamic_bsz else None)
        self._build_model()
        self.global_step = 0

    def _build_model(self) -> None:
        cfg = self.config
        self.lora = LoraSpec.from_model_config(cfg.model, "model")
        self.model = build_sharded_model(cfg.model, "causal_lm", cfg.model.fsdp_config, self.world_size, self.device,
                                         train=True, path=cfg.model.partial_pretrain, lora=self.lora)
        if self.lora is not None and self.rank == 0:
            print(f"SFT: {lora_summary(self.model)}", flush=True)
        if self.config.use_remove_padding:  # packed rows attend within each sequence, no dense block mask
            use_packed_attention(self.model, force=self.sp.size > 1)
            check_heads(self.model.config, self.sp.size, "ulysses_sequence_parallel_size")
        self.optimizer = build_optimizer(self.model, cfg.optim.to_optim_config())
        self.lr_scheduler = build_lr_scheduler(self.optimizer, cfg.optim.to_optim_config(), self.total_steps)

    # ------------------------------------------------------------------ data

    def _loader(self, dataset: Any, batches: list[list[int]]) -> Iterator[DataProto]:
        """Collated batches of ``dataset`` for the given index lists, tokenised by the DataLoader's workers."""
        from torch.utils.data import DataLoader

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=partial(sft_collate_fn, pad_token_id=pad),
                            num_workers=self.config.data.dataloader_num_workers)
        for tensors in loader:
            yield DataProto.from_dict(tensors)

    def train_batches(self, start_step: int) -> Iterator[DataProto]:
        """This rank's share of the global batches of steps ``start_step, start_step + 1, ...``, over epochs."""
        data, B = self.config.data, self.config.data.train_batch_size
        step = start_step
        while step < self.total_steps:
            epoch, within = divmod(step, self.steps_per_epoch)
            order = epoch_order(len(self.train_dataset), self.config.trainer.seed, epoch, data.shuffle)
            last = min(self.steps_per_epoch, within + self.total_steps - step)
            batches = [rank_slice(order[s * B : (s + 1) * B], self.dp_rank, self.dp_size) for s in range(within, last)]
            yield from self._loader(self.train_dataset, batches)
            step += len(batches)

    # ------------------------------------------------------------------ training

    def _inputs(self, mb: DataProto) -> dict[str, torch.Tensor]:
        return {k: mb.batch[k].to(self.device) for k in MODEL_INPUTS}

    def training_step(self, batch: DataProto) -> dict[str, float]:
        """One optimizer step on this rank's share of a global batch; returns global metrics."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        micro_batches, _ = split_micro_batches(batch, self.plan)
        local_targets = sum(target_mask(mb.batch["loss_mask"], mb.batch["attention_mask"]).sum() for mb in micro_batches)
        # summed over all ranks, each sequence-parallel group counted sp times
        global_targets = _all_reduce(torch.tensor([float(local_targets)], device=self.device))[0] / self.sp.size
        nll = torch.zeros((), device=self.device)
        packed = self.config.use_remove_padding
        for i, mb in enumerate(micro_batches):
            if hasattr(self.model, "set_requires_gradient_sync"):  # FSDP2: reduce gradients once, on the last one
                self.model.set_requires_gradient_sync(i == len(micro_batches) - 1)
            log_probs = target_log_probs(self.model, self._inputs(mb), packed, self.sp)  # (N_targets,)
            # FSDP averages over all ranks; with sp > 1 each rank back-propagates its own positions only
            sft_loss(log_probs, global_targets, self.world_size).backward()
            nll += -log_probs.detach().sum()
        grad_norm = clip_grad_norm(self.model, self.config.optim.clip_grad)
        lr = self.lr_scheduler.get_last_lr()[0]
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:
            logger.warning("step %d: gradient norm is %s; the update is skipped", self.global_step + 1, grad_norm)
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        nll = _all_reduce(nll.reshape(1))[0] / self.sp.size
        return {"train/loss": float(nll / global_targets.clamp(min=1)), "train/lr": lr,
                "train/grad_norm": float(grad_norm), "train/target_tokens": float(global_targets)}

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Token-mean NLL of the assistant tokens over the whole validation set (all ranks)."""
        self.model.eval()
        n, W = len(self.val_dataset), self.dp_size
        per_rank = -(-n // W)  # every rank runs the same number of forwards (FSDP's gathers must line up)
        mine = list(range(self.dp_rank, n, W))  # the ranks of a sequence-parallel group share their samples
        real = len(mine)
        mine += [0] * (per_rank - real)  # padding samples, their targets masked out below
        mbs = self.config.data.micro_batch_per_gpu(W)
        sums = torch.zeros(2, device=self.device)  # (nll, targets)
        batches = [mine[i : i + mbs] for i in range(0, per_rank, mbs)]
        for b, batch in enumerate(self._loader(self.val_dataset, batches)):
            first = b * mbs
            for row in range(len(batch)):
                if first + row >= real:
                    batch.batch["loss_mask"][row] = 0
            inputs = self._inputs(batch)
            log_probs = target_log_probs(self.model, inputs, self.config.use_remove_padding, self.sp)
            sums += torch.stack([-log_probs.sum(), target_mask(inputs["loss_mask"], inputs["attention_mask"]).sum()])
        sums = _all_reduce(sums) / self.sp.size
        return float(sums[0] / sums[1].clamp(min=1))

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_root(self) -> str:
        """``trainer.default_local_dir``, with the default's ``${trainer.*}`` names filled in when the config was
        built in Python (the command line resolves them already)."""
        trainer = self.config.trainer
        return (trainer.default_local_dir.replace("${trainer.project_name}", trainer.project_name)
                .replace("${trainer.experiment_name}", trainer.experiment_name))

    def save_checkpoint(self) -> str:
        """Write ``<default_local_dir>/global_step_<N>/`` (atomically) and return its path."""
        trainer = self.config.trainer
        contents = list(trainer.checkpoint.save_contents)
        if trainer.save_hf_model and "hf_model" not in contents:
            contents.append("hf_model")
        hf_config = copy.deepcopy(self.model.config)
        hf_config.use_cache = True  # training turned the KV cache off; generation from the export wants it

        def save(path: str) -> None:
            with warnings.catch_warnings():  # DCP without a process group warns that it saves in one process
                warnings.filterwarnings("ignore", message=".*assuming the intent is to (save|load) in a single process.*")
                save_checkpoint(path, self.model, self.optimizer, self.lr_scheduler, contents, self.rank,
                                self.world_size, hf_save=(hf_config, self.tokenizer), lora=self.lora,
                                base_model_path=self.config.model.partial_pretrain)

        return save_step_atomically(self.checkpoint_root, self.global_step, save, self.rank, trainer.max_ckpt_to_keep)

    def load_checkpoint(self, path: str) -> None:
        """Restore model, optimizer and schedule from ``path`` (``.../global_step_N``) and continue after step N."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*assuming the intent is to (save|load) in a single process.*")
            load_checkpoint(path, self.model, self.optimizer, self.lr_scheduler,
                            list(self.config.trainer.checkpoint.load_contents), self.rank, self.world_size)
        self.global_step = step_of(path)

    def _resume(self) -> None:
        trainer = self.config.trainer
        if trainer.resume_mode == "disable":
            return
        if trainer.resume_mode == "resume_path":
            path = trainer.resume_from_path
        else:
            path = find_latest_checkpoint(self.checkpoint_root)
        if path:
            self.load_checkpoint(path)
            if self.rank == 0:
                logger.info("resumed from %s (step %d)", path, self.global_step)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, float]:
        """Train to ``total_steps`` (resuming first when a checkpoint is found); returns the last metrics."""
        from tqdm import tqdm

        from verl.utils.tracking import Tracking

        trainer = self.config.trainer
        self._resume()
        tracker = Tracking(trainer.project_name, trainer.experiment_name, trainer.logger, to_dict(self.config),
                           local_dir=self.checkpoint_root) if self.rank == 0 else None
        bar = tqdm(total=self.total_steps, initial=self.global_step, desc="SFT", disable=self.rank != 0, dynamic_ncols=True)
        metrics: dict[str, float] = {}
        for batch in self.train_batches(self.global_step):
            start = time.perf_counter()
            metrics = self.training_step(batch)
            self.global_step += 1
            elapsed = time.perf_counter() - start
            tokens = _all_reduce(batch.batch["attention_mask"].sum().float().reshape(1).to(self.device))[0]
            metrics.update({"train/epoch": self.global_step / self.steps_per_epoch, "perf/step_time_s": elapsed,
                            "perf/tokens_per_s": float(tokens) / elapsed})
            last = self.global_step >= self.total_steps
            if self.val_dataset is not None and _due(trainer.test_freq, self.global_step, last):
                metrics["val/loss"] = self.validation_loss()
            if _due(trainer.save_freq, self.global_step, last):
                self.save_checkpoint()
            if tracker is not None:
                tracker.log(metrics, self.global_step)
            bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
            bar.update(1)
        bar.close()
        if tracker is not None:
            tracker.finish()
        if math.isnan(metrics.get("train/loss", 0.0)):
            raise FloatingPointError("the training loss is NaN; lower optim.lr or check the data")
        return metrics


def _due(freq: int, step: int, last: bool) -> bool:
    """Whether an every-``freq``-steps action (validation, checkpoint) runs at ``step``; always at the last step."""
    return last or (freq > 0 and step % freq == 0)
