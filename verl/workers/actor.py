"""The policy's computations on one rank: log-probs and the PPO update (loss math from ``core_algos``).

The update normalises each micro-batch's loss by the mini-batch's *global* token (or sequence) count, all-
reduced over the data-parallel ranks before the micro-batches run, and multiplies it by the number of ranks
because FSDP averages gradients: the gradient then equals that of the whole mini-batch on one rank, however
it is split.

With Ulysses sequence parallelism (``sp``, :mod:`verl.workers.parallel.ulysses`) the ``sp`` ranks of a group hold
the same batch and each runs its slice of every packed row; counts summed over all ranks are divided by ``sp``,
and the loss is still multiplied by the number of FSDP ranks (all of them): each rank back-propagates only its
own positions, so the group's gradients add up to the micro-batch's. With tensor parallelism
(:mod:`verl.workers.parallel.tensor_parallel`) the ``tp`` ranks of a group also hold the same batch (counts are
divided by ``tp``), but each computes the whole loss and fills its own weight shards: FSDP averages over the
``world / tp`` data-parallel ranks only, and the loss is multiplied by that.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import (
    agg_loss,
    agg_loss_counts,
    compute_tis_weights,
    get_policy_loss_fn,
    kl_penalty,
)
from verl.workers.attention import use_packed_attention
from verl.workers.batching import BatchPlan, split_micro_batches, to_device
from verl.workers.config import ActorConfig
from verl.workers.forward import MODEL_INPUTS, ResponseLayout, response_layout, response_logits
from verl.workers.fsdp import clip_grad_norm
from verl.workers.parallel.ulysses import UlyssesGroup

__all__ = ["PPOActor", "all_reduce_sum", "global_counts", "is_on_policy", "mean_metrics", "micro_batch_on_device"]


def is_on_policy(ppo_epochs: int, num_trajectories: int, mini_batch_trajectories: int) -> bool:
    """True when the update takes exactly one optimizer step on the batch (one epoch, one mini-batch): its
    forward then runs on the weights that generated the batch, so the old log-probs equal the current ones
    and the PPO ratio is 1 by construction; the old-log-prob forward can be skipped."""
    return ppo_epochs == 1 and num_trajectories <= mini_batch_trajectories


def micro_batch_on_device(mb: DataProto, packed: bool, device: torch.device, keys: tuple[str, ...] = (),
                          sp: UlyssesGroup | None = None) -> tuple[ResponseLayout, dict[str, torch.Tensor]]:
    """The micro-batch's forward layout (built on the host; with ``sp`` this rank's slice of it) and its ``keys``
    tensors, moved to ``device`` in one host-to-device copy."""
    layout = response_layout({k: mb.batch[k] for k in MODEL_INPUTS}, mb.batch["responses"].shape[-1], packed, device,
                             sp)
    moved = to_device({**layout.tensors(), **{f"batch.{k}": mb.batch[k] for k in keys}}, device)
    return layout.with_tensors(moved), {k: moved[f"batch.{k}"] for k in keys}


def global_counts(micro_batches: list[DataProto], device: torch.device,
                  group_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid tokens and sequences of a whole mini-batch, summed over its micro-batches and the data-parallel ranks
    (all ranks, divided by ``group_size``: the ranks of a sequence- or tensor-parallel group hold the same batch)."""
    counts = torch.zeros(2, dtype=torch.float32)
    for mb in micro_batches:  # on the host, where the batch is: one small copy to the device below
        tokens, seqs = agg_loss_counts(mb.batch["response_mask"].cpu())
        counts += torch.stack([tokens, seqs])
    counts = counts.to(device)
    if dist.is_initialized():
        dist.all_reduce(counts)
    counts = counts / group_size
    return counts[0], counts[1]


def all_reduce_sum(values: dict[str, torch.Tensor], group_size: int = 1) -> dict[str, torch.Tensor]:
    """Sum scalar tensors over the data-parallel ranks in one collective (``group_size`` as in :func:`global_counts`)."""
    if not values:
        return {}
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in values.values()])
    if dist.is_initialized():
        dist.all_reduce(stacked)
    return dict(zip(values, stacked / group_size))


def mean_metrics(metrics: dict[str, list[torch.Tensor | float]]) -> dict[str, float]:
    """One host sync at the end of an update: the mean of each metric's recorded values."""
    return {k: float(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in vs]).mean()) for k, vs in metrics.items() if vs}


class PPOActor:
    """Log-probs and PPO updates of a (sharded) causal LM on this rank's slice of the batch."""

    def __init__(self, model: nn.Module, config: ActorConfig, optimizer: torch.optim.Optimizer | None = None,
                 lr_scheduler=None, packed: bool = True, dp_size: int = 1, sp: UlyssesGroup | None = None,
                 tp_size: int = 1):
        self.model = model
        self.config = config
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.packed = packed
        self.dp_size = dp_size  # FSDP's averaging factor: every rank (Ulysses), or world / tp_size (tensor parallel)
        self.sp = sp if sp is not None and sp.size > 1 else None
        self.group_size = (sp.size if self.sp is not None else 1) * tp_size  # ranks holding the same batch
        self.policy_loss_fn = get_policy_loss_fn(config.policy_loss.loss_mode)
        if self.sp is not None and not packed:
            raise ValueError("ulysses_sequence_parallel_size > 1 needs packed forwards: set model.use_remove_padding=true")
        if packed:
            use_packed_attention(model, force=self.sp is not None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def compute_log_prob(self, data: DataProto, plan: BatchPlan, temperature: float,
                         calculate_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, R)`` log-probs of ``data``'s responses (and entropies), in the input order."""
        self.model.eval()
        R = data.batch["responses"].shape[-1]
        micro_batches, restore = split_micro_batches(data, plan)
        log_probs, entropies = [], []
        for mb in micro_batches:
            layout, _ = micro_batch_on_device(mb, self.packed, self.device, sp=self.sp)
            lp, ent = response_logits(self.model, layout, R, temperature, self.packed, calculate_entropy)
            log_probs.append(lp)
            entropies.append(ent)
        log_probs = torch.cat(log_probs)
        entropy = torch.cat(entropies) if calculate_entropy else None
        if restore is not None:
            log_probs = log_probs[restore.to(log_probs.device)]
            entropy = entropy[restore.to(entropy.device)] if entropy is not None else None
        return log_probs.cpu(), entropy.cpu() if entropy is not None else None

    def update_policy(self, data: DataProto, plan: BatchPlan, temperature: float,
                      calculate_entropy: bool = False) -> dict[str, float]:
        """PPO epochs over mini-batches of ``data`` (this rank's trajectories); returns mean metrics.

        On-policy updates (:func:`is_on_policy`) use the detached current log-probs as ``old_log_probs`` (the
        batch need not carry them). ``calculate_entropy`` adds the token-mean ``actor/entropy`` metric when the
        loss does not compute entropy anyway.
        """
        cfg = self.config
        self.model.train()
        # rollout correction in bypass mode (algorithm.rollout_correction): the rollout's log-probs are the old ones
        self._bypass = data.meta_info.get("rollout_correction_bypass")
        self._on_policy = is_on_policy(cfg.ppo_epochs, len(data), plan.mini_batch_size) and self._bypass is None
        self._entropy_metric = calculate_entropy and cfg.entropy_coeff == 0
        keys = [*MODEL_INPUTS, "responses", "response_mask", "advantages"]
        keys += [] if self._on_policy else ["old_log_probs"]
        keys += ["ref_log_prob"] if cfg.use_kl_loss else []
        keys += ["rollout_log_probs"] if cfg.tis_imp_ratio_cap > 0 or self._bypass is not None else []
        keys += ["rollout_is_weights"] if "rollout_is_weights" in data.batch else []
        missing = [k for k in keys if k not in data.batch]
        if missing:
            raise KeyError(f"update_actor needs batch keys {missing} (use_kl_loss={cfg.use_kl_loss}, "
                           f"tis_imp_ratio_cap={cfg.tis_imp_ratio_cap})")
        data = data.select(batch_keys=keys)
        metrics: dict[str, list] = {}
        generator = torch.Generator().manual_seed(cfg.data_loader_seed)
        for _ in range(cfg.ppo_epochs):
            epoch_data = data[torch.randperm(len(data), generator=generator)] if cfg.shuffle else data
            for mini in epoch_data.split(plan.mini_batch_size):
                self._update_mini_batch(mini, plan, temperature, metrics)
        return mean_metrics(metrics)

    def _update_mini_batch(self, mini: DataProto, plan: BatchPlan, temperature: float, metrics: dict) -> None:
        cfg = self.config
        micro_batches, _ = split_micro_batches(mini, plan)
        num_tokens, num_seqs = global_counts(micro_batches, self.device, self.group_size)
        self.optimizer.zero_grad(set_to_none=True)
        loss_terms: dict[str, torch.Tensor] = {}
        for mb in micro_batches:
            loss, terms, ratios = self._micro_batch_loss(mb, temperature, num_tokens, num_seqs)
            (loss * self.dp_size).backward()  # FSDP averages over ranks; the loss is already a global sum
            for k, v in terms.items():
                loss_terms[k] = loss_terms.get(k, 0.0) + v
            for k, v in ratios.items():
                metrics.setdefault(k, []).append(v)
        for k, v in all_reduce_sum(loss_terms, self.group_size).items():  # the mini-batch's loss terms, equal on every rank
            metrics.setdefault(k, []).append(v)
        grad_norm = clip_grad_norm(self.model, cfg.grad_clip)
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:  # a non-finite gradient would poison the weights; skip this step and say so in the metrics
            self.optimizer.zero_grad(set_to_none=True)
        self.lr_scheduler.step()
        metrics.setdefault("actor/grad_norm", []).append(grad_norm.detach())
        metrics.setdefault("actor/lr", []).append(self.lr_scheduler.get_last_lr()[0])

    def _bypass_loss(self, log_prob: torch.Tensor, rollout_log_probs: torch.Tensor, advantages: torch.Tensor,
                     mask: torch.Tensor, norm: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Bypass-mode rollout correction on this micro-batch: ``(loss, mask)`` of the ``reinforce`` loss, or
        ``(None, mask after rejection)`` for ``ppo_clip`` (whose PPO ratio is already pi_theta / pi_rollout)."""
        from verl.trainer.ppo.rollout_corr_helper import (
            bypass_reinforce_loss,
            compute_rollout_correction_and_rejection_mask,
        )

        rc = self._bypass
        if rc.loss_type == "reinforce":
            return bypass_reinforce_loss(log_prob, rollout_log_probs, advantages, mask, rc, self.config.loss_agg_mode,
                                         **norm)
        if rc.rollout_rs is not None:
            _, new_mask, _ = compute_rollout_correction_and_rejection_mask(log_prob.detach(), rollout_log_probs, mask, rc)
            mask.copy_(new_mask.to(mask.dtype))
        return None

    def _micro_batch_loss(self, mb: DataProto, temperature: float, num_tokens: torch.Tensor,
                          num_seqs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The micro-batch's share of the mini-batch loss, its loss terms (which add up over micro-batches
        and ranks) and its ratio metrics (averaged)."""
        cfg = self.config
        R = mb.batch["responses"].shape[-1]
        keys = ("response_mask", "advantages", *(k for k in ("old_log_probs", "ref_log_prob", "rollout_log_probs",
                                                                 "rollout_is_weights")
                                                 if k in mb.batch and not (k == "old_log_probs" and self._on_policy)))
        layout, t = micro_batch_on_device(mb, self.packed, self.device, keys, self.sp)
        mask, advantages = t["response_mask"], t["advantages"]
        log_prob, entropy = response_logits(self.model, layout, R, temperature, self.packed,
                                            calculate_entropy=cfg.entropy_coeff != 0 or self._entropy_metric)
        old_log_prob = log_prob.detach() if self._on_policy else t["old_log_probs"]
        norm = {"global_num_tokens": num_tokens, "global_num_seqs": num_seqs, "loss_scale_factor": cfg.loss_scale_factor}
        extra = {}
        if "rollout_is_weights" in t:  # decoupled rollout correction: weights computed by the driver
            extra["rollout_is_weights"] = t["rollout_is_weights"]
        if cfg.tis_imp_ratio_cap > 0:
            weights, _ = compute_tis_weights(old_log_prob, t["rollout_log_probs"], mask, cap=cfg.tis_imp_ratio_cap)
            extra["rollout_is_weights"] = weights
        pl = cfg.policy_loss
        if self._bypass is not None:
            pg = self._bypass_loss(log_prob, t["rollout_log_probs"], advantages, mask, norm)
            if pg is not None:
                pg_loss, mask = pg
                pg_clipfrac = ppo_kl = pg_clipfrac_lower = torch.zeros((), device=log_prob.device)
        if self._bypass is None or self._bypass.loss_type != "reinforce":
            pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower = self.policy_loss_fn(
                old_log_prob, log_prob, advantages, mask,
                cliprange=cfg.clip_ratio, cliprange_low=cfg.clip_ratio_low, cliprange_high=cfg.clip_ratio_high,
                clip_ratio_c=cfg.clip_ratio_c, loss_agg_mode=cfg.loss_agg_mode,
                clip_cov_ratio=pl.clip_cov_ratio, clip_cov_lb=pl.clip_cov_lb, clip_cov_ub=pl.clip_cov_ub,
                kl_cov_ratio=pl.kl_cov_ratio, ppo_kl_coef=pl.ppo_kl_coef, **norm, **extra,
            )
        loss = pg_loss
        terms = {"actor/pg_loss": pg_loss.detach()}
        ratios = {"actor/pg_clipfrac": pg_clipfrac.detach(), "actor/ppo_kl": ppo_kl.detach(),
                  "actor/pg_clipfrac_lower": pg_clipfrac_lower.detach()}
        if entropy is not None and cfg.entropy_coeff != 0:
            ent = agg_loss(entropy, mask, cfg.loss_agg_mode, **norm)
            loss = loss - cfg.entropy_coeff * ent
            terms["actor/entropy"] = ent.detach()
        elif entropy is not None:  # the metric only: token-mean, as the old-log-prob pass reports it
            terms["actor/entropy"] = (entropy.detach() * mask).sum() / num_tokens
        if cfg.use_kl_loss:
            kld = kl_penalty(log_prob, t["ref_log_prob"], cfg.kl_loss_type)
            kl_loss = agg_loss(kld, mask, cfg.loss_agg_mode, **norm)
            loss = loss + cfg.kl_loss_coef * kl_loss
            terms["actor/kl_loss"] = kl_loss.detach()
        return loss, terms, ratios
