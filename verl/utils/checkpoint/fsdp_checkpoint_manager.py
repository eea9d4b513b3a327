"""verl's ``FSDPCheckpointManager``: save and restore an FSDP model, its optimizer and LR schedule.

A thin object over :func:`verl.workers.fsdp.save_checkpoint` / :func:`verl.workers.fsdp.load_checkpoint` (the one
implementation the FSDP workers use): sharded weights and optimizer state through torch.distributed.checkpoint,
per-rank LR-schedule and RNG state, and with ``hf_model`` a transformers directory. Every rank calls it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from verl.workers.config import CheckpointConfig

__all__ = ["FSDPCheckpointManager"]

_KNOWN_CONTENTS = {"model", "optimizer", "extra", "hf_model"}


def _checkpoint_config(config: Any) -> CheckpointConfig:
    if config is None:
        return CheckpointConfig()
    if isinstance(config, CheckpointConfig):
        return config
    if not isinstance(config, Mapping):
        config = {k: getattr(config, k) for k in ("save_contents", "load_contents", "async_save") if hasattr(config, k)}
    unknown = set(config) - {"save_contents", "load_contents", "async_save"}
    if unknown:
        raise ValueError(f"checkpoint_config: unknown key(s) {sorted(unknown)}; known: save_contents, load_contents, "
                         "async_save")
    out = CheckpointConfig(**{k: list(v) if k.endswith("contents") else v for k, v in config.items()})
    for key in ("save_contents", "load_contents"):
        bad = set(getattr(out, key)) - _KNOWN_CONTENTS
        if bad:
            raise ValueError(f"checkpoint_config.{key}: unknown part(s) {sorted(bad)}; known: {sorted(_KNOWN_CONTENTS)}")
    if out.async_save:
        raise ValueError("checkpoint_config.async_save=True is not available: checkpoints are written synchronously")
    return out


class FSDPCheckpointManager:
    """Args:
        model: the FSDP-sharded model (a transformers model: its ``config`` goes into ``huggingface/``).
        optimizer / lr_scheduler: saved and restored with it (either may be ``None``).
        processing_class: the tokenizer (or processor) written next to the model's config.
        checkpoint_config: ``save_contents`` / ``load_contents`` (a :class:`CheckpointConfig`, dict or DictConfig).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 lr_scheduler: Any | None = None, processing_class: Any | None = None,
                 checkpoint_config: Any | None = None):
        self.model, self.optimizer, self.lr_scheduler = model, optimizer, lr_scheduler
        self.processing_class = processing_class
        self.checkpoint_config = _checkpoint_config(checkpoint_config)
        self.previous_saved_paths: list[str] = []
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1

    def save_checkpoint(self, local_path: str, hdfs_path: str | None = None, global_step: int = 0,
                        max_ckpt_to_keep: int | None = None) -> None:
        """Write ``save_contents`` under ``local_path``; with ``max_ckpt_to_keep`` the oldest directories this
        manager saved beyond that many are removed."""
        from verl.workers.fsdp import save_checkpoint

        if hdfs_path is not None:
            raise ValueError("hdfs_path is not supported: save to a local (or mounted) path")
        config = getattr(self.model, "config", None)
        hf_save = (config, self.processing_class) if config is not None and self.processing_class is not None else None
        save_checkpoint(local_path, self.model, self.optimizer, self.lr_scheduler,
                        list(self.checkpoint_config.save_contents), self.rank, self.world_size, hf_save=hf_save)
        self.previous_saved_paths.append(local_path)
        if max_ckpt_to_keep and max_ckpt_to_keep > 0:
            while len(self.previous_saved_paths) > max_ckpt_to_keep:
                old = self.previous_saved_paths.pop(0)
                if self.rank == 0 and os.path.abspath(old) != os.path.abspath(local_path):
                    shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, local_path: str | None, hdfs_path: str | None = None,
                        del_local_after_load: bool = False) -> None:
        """Restore ``load_contents`` from ``local_path`` (``None``: nothing to load, as verl)."""
        from verl.workers.fsdp import load_checkpoint

        if hdfs_path is not None:
            raise ValueError("hdfs_path is not supported: load from a local (or mounted) path")
        if local_path is None:
            return
        load_checkpoint(local_path, self.model, self.optimizer, self.lr_scheduler,
                        list(self.checkpoint_config.load_contents), self.rank, self.world_size)
        if del_local_after_load:
            if dist.is_initialized():
                dist.barrier()
            if self.rank == 0:
                shutil.rmtree(local_path, ignore_errors=True)
