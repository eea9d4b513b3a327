"""The value function: ``CriticWorker`` (SPMD worker) around ``ValueCritic`` (one rank's computations)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from verl.protocol import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, make_nd_compute_dataproto_dispatch_fn, register
from verl.trainer.ppo.core_algos import compute_value_loss
from verl.utils.config import from_mapping
from verl.workers.actor import all_reduce_sum, global_counts, mean_metrics, micro_batch_on_device
from verl.workers.attention import use_packed_attention
from verl.workers.batching import BatchPlan, split_micro_batches
from verl.workers.config import CriticConfig
from verl.workers.parallel.tensor_parallel import with_megatron_offload
from verl.workers.forward import MODEL_INPUTS, response_values
from verl.workers.fsdp import (
    build_lr_scheduler,
    build_optimizer,
    build_sharded_model,
    clip_grad_norm,
    load_checkpoint,
    offload_model,
    offload_optimizer,
    save_checkpoint,
)
from verl.workers.parallel.ulysses import UlyssesGroup, check_heads, make_ulysses_group
from verl.workers.perf import actor_perf_metrics

__all__ = ["CriticWorker", "ValueCritic"]


class ValueCritic:
    """Values and clipped-value-loss updates of a (sharded) value model on this rank's slice."""

    def __init__(self, model: nn.Module, config: CriticConfig, optimizer, lr_scheduler, packed: bool, dp_size: int,
                 sp: UlyssesGroup | None = None, tp_size: int = 1):
        self.model, self.config = model, config
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.packed, self.dp_size = packed, dp_size  # dp_size: FSDP's averaging factor (as PPOActor's)
        self.sp = sp if sp is not None and sp.size > 1 else None
        self.group_size = (sp.size if self.sp is not None else 1) * tp_size  # ranks holding the same batch
        if self.sp is not None and not packed:
            raise ValueError("critic.ulysses_sequence_parallel_size > 1 needs critic.model.use_remove_padding=true")
        if packed:
            use_packed_attention(model, force=self.sp is not None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _values(self, mb: DataProto, keys: tuple[str, ...] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(B, R)`` values of a micro-batch and its ``keys`` tensors, moved with its inputs in one copy."""
        layout, tensors = micro_batch_on_device(mb, self.packed, self.device, keys, self.sp)
        return response_values(self.model, layout, mb.batch["responses"].shape[-1], self.packed), tensors

    @torch.no_grad()
    def compute_values(self, data: DataProto, plan: BatchPlan) -> torch.Tensor:
        """``(B, R)`` values of ``data``'s response states (0 where ``response_mask`` is 0)."""
        self.model.eval()
        micro_batches, restore = split_micro_batches(data, plan)
        values = torch.cat([self._values(mb)[0] for mb in micro_batches])
        if restore is not None:
            values = values[restore.to(values.device)]
        return (values * data.batch["response_mask"].to(values.device)).cpu()

    def update_critic(self, data: DataProto, plan: BatchPlan) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        data = data.select(batch_keys=[*MODEL_INPUTS, "responses", "response_mask", "values", "returns"])
        metrics: dict[str, list] = {}
        generator = torch.Generator().manual_seed(cfg.data_loader_seed)
        for _ in range(cfg.ppo_epochs):
            epoch_data = data[torch.randperm(len(data), generator=generator)] if cfg.shuffle else data
            for mini in epoch_data.split(plan.mini_batch_size):
                micro_batches, _ = split_micro_batches(mini, plan)
                num_tokens, num_seqs = global_counts(micro_batches, self.device, self.group_size)
                self.optimizer.zero_grad(set_to_none=True)
                vf_loss_sum = torch.zeros((), device=self.device)
                for mb in micro_batches:
                    vpreds, t = self._values(mb, ("returns", "values", "response_mask"))
                    mask = t["response_mask"]
                    vf_loss, vf_clipfrac = compute_value_loss(
                        vpreds, t["returns"], t["values"], mask,
                        cfg.cliprange_value, cfg.loss_agg_mode, global_num_tokens=num_tokens, global_num_seqs=num_seqs,
                    )
                    (vf_loss * self.dp_size).backward()  # FSDP averages over ranks; the loss is a global sum
                    vf_loss_sum += vf_loss.detach()
                    metrics.setdefault("critic/vf_clipfrac", []).append(vf_clipfrac.detach())
                    vpred_mean = (vpreds.detach() * mask).sum() / mask.sum().clamp(min=1)  # no host sync
                    metrics.setdefault("critic/vpred_mean", []).append(vpred_mean)
                grad_norm = clip_grad_norm(self.model, cfg.grad_clip)
                if torch.isfinite(grad_norm):
                    self.optimizer.step()
                self.lr_scheduler.step()
                metrics.setdefault("critic/vf_loss", []).append(all_reduce_sum({"l": vf_loss_sum}, self.group_size)["l"])
                metrics.setdefault("critic/grad_norm", []).append(grad_norm.detach())
                metrics.setdefault("critic/lr", []).append(self.lr_scheduler.get_last_lr()[0])
        return mean_metrics(metrics)


class CriticWorker(Worker):
    """The value model's SPMD worker.

    Args:
        config: the ``critic`` section (typed or a mapping).
        rollout_n: responses per prompt (mini-batches count prompts).
        total_training_steps: schedule length when ``critic.optim.total_training_steps`` is -1.
        model_path: the model to start from when ``critic.model.path`` is empty (the trainer passes the actor's).
    """

    def __init__(self, config: CriticConfig | Mapping[str, Any], rollout_n: int = 1, total_training_steps: int = -1,
                 model_path: str = ""):
        super().__init__()
        self.init_process_group()  # as verl's workers: the model workers join the world, the base class does not
        self.config = config if isinstance(config, CriticConfig) else from_mapping(CriticConfig, config, "critic.")
        self.rollout_n = rollout_n
        steps = self.config.optim.total_training_steps
        self.total_training_steps = steps if steps > 0 else total_training_steps
        self.model_path = self.config.model.path or model_path
        if not self.model_path:
            raise ValueError("set critic.model.path (the value model's directory)")
        # the ranks of a sequence- or tensor-parallel group get the same data; the first one returns the group's results
        self.tp_size = self.config.megatron.tensor_model_parallel_size
        group = self.config.ulysses_sequence_parallel_size * self.tp_size
        self._register_dispatch_collect_info("critic", self.rank // group, self.rank % group == 0)
        self._fsdp = with_megatron_offload(self.config.model.fsdp_config, self.config.megatron)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        from verl.workers.fsdp_workers import load_tokenizer

        cfg = self.config
        self.tokenizer = load_tokenizer(cfg.model.tokenizer_path or self.model_path, cfg.model.trust_remote_code)
        key = "critic.ulysses_sequence_parallel_size"
        self.sp = make_ulysses_group(cfg.ulysses_sequence_parallel_size, key)
        self.module = build_sharded_model(cfg.model, "value", self._fsdp, self.world_size, self.device, train=True,
                                          path=self.model_path, tp_size=self.tp_size,
                                          tp_key="critic.megatron.tensor_model_parallel_size")
        check_heads(self.module.config, self.sp.size, key)
        self.optimizer = build_optimizer(self.module, cfg.optim)
        self.lr_scheduler = build_lr_scheduler(self.optimizer, cfg.optim, self.total_training_steps)
        self.critic = ValueCritic(self.module, cfg, self.optimizer, self.lr_scheduler, cfg.model.use_remove_padding,
                                  self.world_size // self.tp_size, self.sp, self.tp_size)
        self._offload(True)

    def _offload(self, to_cpu: bool) -> None:
        fsdp = self._fsdp
        if fsdp.param_offload:
            offload_model(self.module, to_cpu, self.device)
        if fsdp.optimizer_offload:
            offload_optimizer(self.optimizer, to_cpu, self.device)

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn("critic"))
    def compute_values(self, data: DataProto) -> DataProto:
        cfg = self.config
        plan = BatchPlan.for_forward(cfg.forward_micro_batch_size_per_gpu or cfg.ppo_micro_batch_size_per_gpu,
                                     cfg.use_dynamic_bsz, cfg.forward_max_token_len_per_gpu * self.sp.size)
        self._offload(False)
        values = self.critic.compute_values(data, plan)
        self._offload(True)
        return DataProto.from_dict({"values": values})

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn("critic"))
    def update_critic(self, data: DataProto) -> DataProto:
        cfg = self.config
        plan = BatchPlan.for_update("critic", cfg.ppo_mini_batch_size, self.rollout_n,
                                    self.world_size // (self.sp.size * self.tp_size),
                                    cfg.ppo_micro_batch_size_per_gpu, cfg.use_dynamic_bsz,
                                    cfg.ppo_max_token_len_per_gpu * self.sp.size)
        self._offload(False)
        start = time.perf_counter()
        metrics = self.critic.update_critic(data, plan)
        metrics.update(actor_perf_metrics(self.module, data, time.perf_counter() - start, cfg.ppo_epochs, prefix="critic"))
        self._offload(True)
        return DataProto(meta_info={"metrics": metrics})

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, local_path: str, global_step: int = 0) -> None:
        self._offload(False)
        save_checkpoint(local_path, self.module, self.optimizer, self.lr_scheduler, self.config.checkpoint.save_contents,
                        self.rank, self.world_size, hf_save=(self.module.config, self.tokenizer))
        self._offload(True)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, local_path: str) -> None:
        self._offload(False)
        load_checkpoint(local_path, self.module, self.optimizer, self.lr_scheduler, self.config.checkpoint.load_contents,
                        self.rank, self.world_size)
        self._offload(True)
