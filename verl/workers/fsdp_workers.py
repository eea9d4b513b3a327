"""``ActorRolloutRefWorker``: the policy's SPMD worker (actor, rollout and reference roles in one process).

Each method moves its slice of the batch to the device, calls the actor / rollout / reference, and returns
a ``DataProto``. In the hybrid roles the rollout engine lives in this process and receives the actor's
current weights (gathered from the FSDP2 shards, no disk) before it generates. With
``rollout.tensor_model_parallel_size = t``, each group of ``t`` consecutive ranks shares one engine (each rank
keeps its slice of the weights) and ``generate_sequences`` gives the group one chunk of the batch.

With LoRA (``model.lora_rank > 0``) the actor trains adapters only; the rollout receives base + merged adapter
deltas, and the reference log-probs come from the same actor with its adapters disabled (no second model).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from verl.protocol import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, make_nd_compute_dataproto_dispatch_fn, register
from verl.utils.config import from_mapping
from verl.utils.device import get_device_name
from verl.workers.actor import PPOActor
from verl.workers.batching import BatchPlan
from verl.workers.config import ActorRolloutRefConfig
from verl.workers.parallel.tensor_parallel import with_megatron_offload
from verl.workers.fsdp import (
    build_lr_scheduler,
    build_optimizer,
    build_sharded_model,
    full_state_dict_iter,
    load_checkpoint,
    offload_model,
    offload_optimizer,
    save_checkpoint,
    to_dtype,
)
from verl.workers.lora import LoraSpec, adapters_disabled, lora_summary, merged_weights_iter
from verl.workers.parallel.groups import make_rank_group
from verl.workers.parallel.ulysses import check_heads, make_ulysses_group
from verl.workers.perf import actor_perf_metrics

__all__ = ["ActorRolloutRefWorker", "ROLES"]

logger = logging.getLogger(__name__)

ROLES = ("actor", "rollout", "ref", "actor_rollout", "actor_rollout_ref")


def load_tokenizer(path: str, trust_remote_code: bool = False, chat_template: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


class ActorRolloutRefWorker(Worker):
    """The policy worker.

    Args:
        config: the ``actor_rollout_ref`` section (typed, or a mapping of its keys).
        role: ``actor``, ``rollout``, ``ref``, ``actor_rollout`` or ``actor_rollout_ref``.
        total_training_steps: optimizer-schedule length when ``actor.optim.total_training_steps`` is -1
            (the trainer passes it; the config is not rewritten).
    """

    def __init__(self, config: ActorRolloutRefConfig | Mapping[str, Any], role: str, total_training_steps: int = -1):
        super().__init__()
        self.init_process_group()  # as verl's workers: the model workers join the world, the base class does not
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {list(ROLES)}")
        self.config = config if isinstance(config, ActorRolloutRefConfig) else from_mapping(
            ActorRolloutRefConfig, config, "actor_rollout_ref.")
        self.role = role
        self._is_actor = role in ("actor", "actor_rollout", "actor_rollout_ref")
        self._is_rollout = role in ("rollout", "actor_rollout", "actor_rollout_ref")
        self._is_ref = role in ("ref", "actor_rollout_ref")
        optim_steps = self.config.actor.optim.total_training_steps
        self.total_training_steps = optim_steps if optim_steps > 0 else total_training_steps
        self._weights_version = 0  # bumped by each actor update
        self._rollout_version = 0  # the version the rollout engine holds
        self.lora = LoraSpec.from_model_config(self.config.model, "actor_rollout_ref.model")
        # with LoRA the actor's base is the reference: no reference model is loaded in an actor process
        self._ref_in_actor = self.lora is not None and self._is_actor
        # Ulysses sequence / tensor parallelism: the ranks of a group get the same data; the first one returns the
        # results. verl's megatron offload keys offload as fsdp_config's do.
        self.tp_size = self.config.actor.megatron.tensor_model_parallel_size
        group = self.config.actor.ulysses_sequence_parallel_size * self.tp_size
        self._register_dispatch_collect_info("actor", self.rank // group, self.rank % group == 0)
        self._actor_fsdp = with_megatron_offload(self.config.actor.fsdp_config, self.config.actor.megatron)
        self._ref_fsdp = with_megatron_offload(self.config.ref.fsdp_config, self.config.ref.megatron)
        # rollout tensor parallelism: the ranks of a TP group run one engine on the same prompts (the same way)
        rollout_tp = self.config.rollout.tensor_model_parallel_size
        self._register_dispatch_collect_info("rollout", self.rank // rollout_tp, self.rank % rollout_tp == 0)

    # ------------------------------------------------------------------ set-up

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        cfg, model_cfg = self.config, self.config.model
        self.tokenizer = load_tokenizer(model_cfg.tokenizer_path or model_cfg.path, model_cfg.trust_remote_code,
                                        model_cfg.custom_chat_template)
        packed = model_cfg.use_remove_padding
        key = "actor_rollout_ref.actor.ulysses_sequence_parallel_size"
        self.sp = make_ulysses_group(cfg.actor.ulysses_sequence_parallel_size, key)
        tp = {"tp_size": self.tp_size, "tp_key": "actor_rollout_ref.actor.megatron.tensor_model_parallel_size"}
        if self._is_actor:
            self.actor_module = build_sharded_model(model_cfg, "causal_lm", self._actor_fsdp, self.world_size, self.device,
                                                    train=True, lora=self.lora, **tp)
            if self.lora is not None and self.rank == 0:
                print(f"actor: {lora_summary(self.actor_module)}", flush=True)
            self.optimizer = build_optimizer(self.actor_module, cfg.actor.optim)
            self.lr_scheduler = build_lr_scheduler(self.optimizer, cfg.actor.optim, self.total_training_steps)
            check_heads(self.actor_module.config, self.sp.size, key)
            self.actor = PPOActor(self.actor_module, cfg.actor, self.optimizer, self.lr_scheduler, packed,
                                  self.world_size // self.tp_size, self.sp, self.tp_size)
            self._offload_actor()
        if self._is_ref and not self._ref_in_actor:
            ref_module = build_sharded_model(model_cfg, "causal_lm", self._ref_fsdp, self.world_size, self.device,
                                             train=False, **tp)
            check_heads(ref_module.config, self.sp.size, key)
            self.ref = PPOActor(ref_module, cfg.actor, packed=packed, dp_size=self.world_size // self.tp_size, sp=self.sp,
                                tp_size=self.tp_size)
            if self._ref_fsdp.param_offload:  # on the host between reference passes
                offload_model(ref_module, True, self.device)
        if self._is_rollout:
            from verl.rollout import build_rollout

            rollout_cfg = cfg.rollout
            if not self._is_actor and rollout_cfg.load_format == "dummy":
                # no actor in this process to hand over weights: the engine reads the checkpoint itself
                rollout_cfg = dataclasses.replace(rollout_cfg, load_format="auto")
            tp_key = "actor_rollout_ref.rollout.tensor_model_parallel_size"
            self.rollout_tp = make_rank_group(rollout_cfg.tensor_model_parallel_size, tp_key)
            self.rollout = build_rollout(rollout_cfg, model_cfg.path, self.tokenizer, self.device, self.rollout_tp)
            if rollout_cfg.multi_turn.enable:  # tools / interactions: the agent loop drives the engine
                from verl.rollout.agent import AgentLoopRollout

                self.rollout = AgentLoopRollout(self.rollout, self.tokenizer, rollout_cfg)
            if cfg.rollout.free_cache_engine:
                self.rollout.sleep()

    def _offload_actor(self) -> None:
        fsdp = self._actor_fsdp
        if fsdp.param_offload:
            offload_model(self.actor_module, True, self.device)
        if fsdp.optimizer_offload:
            offload_optimizer(self.optimizer, True, self.device)

    def _load_actor(self, with_optimizer: bool) -> None:
        fsdp = self._actor_fsdp
        if fsdp.param_offload:
            offload_model(self.actor_module, False, self.device)
        if with_optimizer and fsdp.optimizer_offload:
            offload_optimizer(self.optimizer, False, self.device)

    def close(self) -> None:
        """Release the rollout engine's memory and process state (an in-process worker group calls this at the
        end of a run; a Ray worker's process simply exits)."""
        close = getattr(getattr(self, "rollout", None), "close", None)
        if callable(close):
            close()

    # ------------------------------------------------------------------ generation

    def _sync_rollout_weights(self) -> float:
        """Hand the actor's current weights to the engine (a gather per tensor); returns seconds spent."""
        if not self._is_actor or (self._rollout_version == self._weights_version and not self.rollout.needs_weights):
            return 0.0
        start = time.perf_counter()
        self._load_actor(with_optimizer=False)
        dtype = to_dtype(self.config.rollout.dtype) if get_device_name() != "cpu" else torch.float32
        self.rollout.update_weights(self._rollout_weights(dtype))
        self._offload_actor()
        self._rollout_version = self._weights_version
        return time.perf_counter() - start

    def _rollout_weights(self, dtype: torch.dtype | None):
        """The actor's full weights by HF name, one tensor at a time; with LoRA the adapters merged into new
        tensors (gathered in the master dtype, merged, then cast), the trained parameters left as they are."""
        if self.lora is None:
            return full_state_dict_iter(self.actor_module, dtype)
        return merged_weights_iter(full_state_dict_iter(self.actor_module), self.actor_module, dtype)

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn("rollout"))
    def generate_sequences(self, prompts: DataProto) -> DataProto:
        if not self._is_rollout:
            raise RuntimeError(f"generate_sequences needs a rollout role; this worker is {self.role!r}")
        seed = prompts.meta_info.get("seed")
        if seed is not None:  # one stream per replica, or replicas given copies of a prompt sample alike
            prompts.meta_info["seed"] = int(seed) * 1009 + self.rollout_tp.dp_rank
        self.rollout.wake_up()
        sync_s = self._sync_rollout_weights()
        start = time.perf_counter()
        out = self.rollout.generate_sequences(prompts)
        gen_s = time.perf_counter() - start
        if self.config.rollout.free_cache_engine:
            self.rollout.sleep()
        out.to("cpu")
        if seed is not None:  # the driver's value: the ranks' outputs carry one meta_info that concat can merge
            out.meta_info["seed"] = seed
        out.meta_info["metrics"] = {"timing_s/weight_sync": sync_s, "timing_s/generate_on_worker": gen_s}
        return out

    # ------------------------------------------------------------------ log-probs

    def _log_prob_plan(self, section) -> BatchPlan:
        # as verl: a sequence-parallel group holds sp x the per-GPU token budget (each rank gets 1 / sp of it)
        return BatchPlan.for_forward(section.log_prob_micro_batch_size_per_gpu, section.log_prob_use_dynamic_bsz,
                                     section.log_prob_max_token_len_per_gpu * self.sp.size)

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn("actor"))
    def compute_log_prob(self, data: DataProto) -> DataProto:
        """``old_log_probs`` (and ``entropys`` when ``meta_info['calculate_entropy']``) under the actor."""
        if not self._is_actor:
            raise RuntimeError(f"compute_log_prob needs an actor role; this worker is {self.role!r}")
        self._load_actor(with_optimizer=False)
        temperature = data.meta_info.get("temperature", self.config.rollout.temperature) or 1.0
        entropy_wanted = bool(data.meta_info.get("calculate_entropy", False))
        log_probs, entropy = self.actor.compute_log_prob(data, self._log_prob_plan(self.config.rollout), temperature, entropy_wanted)
        self._offload_actor()
        tensors = {"old_log_probs": log_probs}
        if entropy is not None:
            tensors["entropys"] = entropy
        return DataProto.from_dict(tensors, meta_info={"temperature": temperature})

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn("actor"))
    def compute_ref_log_prob(self, data: DataProto) -> DataProto:
        """``ref_log_prob`` under the frozen reference policy: with LoRA, the actor's base (adapters disabled)."""
        if not (self._is_ref or self._ref_in_actor):
            raise RuntimeError(f"compute_ref_log_prob needs a ref role (or an actor with LoRA); this worker is {self.role!r}")
        temperature = data.meta_info.get("temperature", self.config.rollout.temperature) or 1.0
        plan = self._log_prob_plan(self.config.ref)
        if self._ref_in_actor:
            self._load_actor(with_optimizer=False)
            with adapters_disabled(self.actor_module):
                log_probs, _ = self.actor.compute_log_prob(data, plan, temperature)
            self._offload_actor()
        else:
            offload = self._ref_fsdp.param_offload
            if offload:
                offload_model(self.ref.model, False, self.device)
            log_probs, _ = self.ref.compute_log_prob(data, plan, temperature)
            if offload:
                offload_model(self.ref.model, True, self.device)
        return DataProto.from_dict({"ref_log_prob": log_probs})

    # ------------------------------------------------------------------ training

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn("actor"))
    def update_actor(self, data: DataProto) -> DataProto:
        if not self._is_actor:
            raise RuntimeError(f"update_actor needs an actor role; this worker is {self.role!r}")
        actor_cfg = self.config.actor
        plan = BatchPlan.for_update(
            "actor_rollout_ref.actor", actor_cfg.ppo_mini_batch_size, self.config.rollout.n,
            self.world_size // (self.sp.size * self.tp_size),
            actor_cfg.ppo_micro_batch_size_per_gpu, actor_cfg.use_dynamic_bsz,
            actor_cfg.ppo_max_token_len_per_gpu * self.sp.size,
        )
        temperature = data.meta_info.get("temperature", self.config.rollout.temperature) or 1.0
        self._load_actor(with_optimizer=True)
        start = time.perf_counter()
        metrics = self.actor.update_policy(data, plan, temperature, bool(data.meta_info.get("calculate_entropy", False)))
        elapsed = time.perf_counter() - start
        self._weights_version += 1
        metrics.update(actor_perf_metrics(self.actor_module, data, elapsed, actor_cfg.ppo_epochs))
        self._offload_actor()
        return DataProto(meta_info={"metrics": metrics})

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def get_actor_weights(self) -> dict[str, torch.Tensor] | None:
        """The actor's full weights on rank 0 (None on other ranks; every rank joins the gathers); with LoRA the
        merged weights by the base model's names."""
        self._load_actor(with_optimizer=False)
        weights = {name: t.detach().cpu().clone() for name, t in self._rollout_weights(None)}
        self._offload_actor()
        return weights if self.rank == 0 else None

    # ------------------------------------------------------------------ checkpoints

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, local_path: str, global_step: int = 0) -> None:
        contents = self.config.actor.checkpoint.save_contents
        self._load_actor(with_optimizer=True)
        save_checkpoint(local_path, self.actor_module, self.optimizer, self.lr_scheduler, contents,
                        self.rank, self.world_size, hf_save=(self.actor_module.config, self.tokenizer),
                        lora=self.lora, base_model_path=self.config.model.path)
        self._offload_actor()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, local_path: str) -> None:
        self._load_actor(with_optimizer=True)
        load_checkpoint(local_path, self.actor_module, self.optimizer, self.lr_scheduler,
                        self.config.actor.checkpoint.load_contents, self.rank, self.world_size)
        self._weights_version += 1  # the rollout must take the restored weights
        self._offload_actor()
