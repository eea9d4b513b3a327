"""``RayPPOTrainer``: the driver of PPO-family training, written as plain calls on worker groups.

One step: load a batch, attach uids and repeat it ``n`` times, generate, score, recompute old log-probs,
reference log-probs and values, turn rewards into advantages on the driver, update the critic and the
actor, then log, validate and checkpoint. Each phase is one short method below.
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from enum import Enum
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from verl.protocol import DataProto
from verl.single_controller.base import ClassWithInitArgs, WorkerGroup
from verl.trainer.config import (
    PPOConfig,
    resolve_device,
    resolve_execution_mode,
    uses_critic,
    uses_reference,
    world_size,
)
from verl.trainer.ppo import batch_ops
from verl.trainer.ppo.checkpoint import CheckpointDirs, find_latest_checkpoint, prune_checkpoints, publish_checkpoint
from verl.trainer.ppo.core_algos import apply_kl_penalty, call_adv_estimator, get_kl_controller
from verl.trainer.ppo.metric_utils import (
    compute_data_metrics,
    compute_rollout_probs_diff_metrics,
    compute_throughput_metrics,
    compute_timing_metrics,
    process_validation_metrics,
)
from verl.utils.config import to_dict
from verl.utils.metric import reduce_metrics

__all__ = ["RayPPOTrainer", "Role"]

GEN_KEYS = ["input_ids", "attention_mask", "position_ids"]
# what a multi-turn rollout reads besides the prompt tensors (verl's agent-loop inputs)
MULTI_TURN_KEYS = ["raw_prompt", "agent_name", "tools_kwargs", "interaction_kwargs", "extra_info"]


class Role(str, Enum):
    ActorRollout = "actor_rollout"
    RefPolicy = "ref"
    Critic = "critic"
    RewardModel = "rm"


@contextmanager
def timer(name: str, timing: dict[str, float]):
    start = time.perf_counter()
    yield
    timing[name] = timing.get(name, 0.0) + time.perf_counter() - start


def reduce_worker_metrics(output: DataProto) -> dict[str, float]:
    """One number per metric from a worker-group result: ``DataProto.concat`` gathered each rank's value into a list
    (reduced with verl's rule: max for "max" names, min for "min" names, else the mean)."""
    reduced = reduce_metrics(dict(output.meta_info.get("metrics", {})))
    return {k: float(v) if isinstance(v, np.number) else v for k, v in reduced.items()}  # plain floats for the loggers


class RayPPOTrainer:
    """Args:
        config: the validated :class:`PPOConfig`.
        tokenizer: the policy's tokenizer (decoding for rewards and dumps).
        reward_fn / val_reward_fn: reward managers (``verl.reward.load_reward_manager``).
        train_dataloader / val_dataloader: resumable loaders of collated ``RLHFDataset`` batches.
    """

    def __init__(self, config: PPOConfig, tokenizer, reward_fn, val_reward_fn, train_dataloader, val_dataloader=None):
        self.config = config
        self.tokenizer = tokenizer
        self.reward_fn, self.val_reward_fn = reward_fn, val_reward_fn
        self.train_dataloader, self.val_dataloader = train_dataloader, val_dataloader
        self.device_name = resolve_device(config)
        self.execution_mode = resolve_execution_mode(config)  # "local": every role in this process, no Ray
        self.use_critic = uses_critic(config)
        self.use_reference = uses_reference(config)
        # LoRA: the actor with its adapters disabled is the reference (verl's ref_in_actor); no reference worker
        model = config.actor_rollout_ref.model
        from verl.workers.lora import lora_enabled

        self.ref_in_actor = lora_enabled(model)
        from verl.reward.loop import is_generative_reward_model

        # a generative reward model is served to the reward function (verl.reward.loop), not run as a worker
        self.use_rm = config.reward_model.enable and not is_generative_reward_model(config)
        self.kl_ctrl = get_kl_controller(config.algorithm.kl_ctrl)
        tr = config.trainer
        steps = len(train_dataloader) * tr.total_epochs
        self.total_training_steps = tr.total_training_steps or steps
        self.local_dir = tr.default_local_dir or os.path.join("checkpoints", tr.project_name, tr.experiment_name)
        self.global_steps = 0
        self._gen_calls = 0  # generation batches so far: seeds sampling, so a resumed run samples the same
        self._train_iter = None
        self._groups: list[WorkerGroup] = []  # what shutdown() stops
        self._pools: list = []
        self.logger = None
        # reward faults: per-step counts for the loggers, and a stop after all-unusable steps (verl.reward.faults)
        from verl.reward.faults import RewardFaultTracker

        self._reward_faults = RewardFaultTracker(tr.max_failed_reward_steps)
        self._val_reward_faults = RewardFaultTracker(0, prefix="val-aux/reward/")

    # ------------------------------------------------------------------------------------------ workers

    def _worker_config(self):
        """The policy section handed to workers: rollout lengths follow ``data.max_*_length`` (as verl's
        interpolation does); the user's config object is not modified."""
        arr, data = self.config.actor_rollout_ref, self.config.data
        per_gpu = self._per_gpu_sizes
        rollout = dataclasses.replace(arr.rollout, prompt_length=data.max_prompt_length,
                                      response_length=data.max_response_length,
                                      **per_gpu.get("actor_rollout_ref.rollout", {}))
        actor = dataclasses.replace(arr.actor, **per_gpu.get("actor_rollout_ref.actor", {}))
        ref = dataclasses.replace(arr.ref, **per_gpu.get("actor_rollout_ref.ref", {}))
        return dataclasses.replace(arr, rollout=rollout, actor=actor, ref=ref)

    @property
    def _per_gpu_sizes(self) -> dict[str, dict[str, int]]:
        """verl's deprecated global micro-batch sizes as the per-GPU sizes the workers read (their copies only)."""
        from verl.trainer.config.compat import per_gpu_sizes

        return per_gpu_sizes(self.config, world_size(self.config))

    def _role_classes(self) -> dict[Role, ClassWithInitArgs]:
        """Each role's worker class and constructor arguments (how they are started is the backend's)."""
        from verl.workers.critic import CriticWorker
        from verl.workers.fsdp_workers import ActorRolloutRefWorker
        from verl.workers.reward_model import RewardModelWorker

        cfg, arr = self.config, self._worker_config()
        classes = {Role.ActorRollout: ClassWithInitArgs(ActorRolloutRefWorker, arr, role="actor_rollout",
                                                        total_training_steps=self.total_training_steps)}
        if self.use_reference and not self.ref_in_actor:
            classes[Role.RefPolicy] = ClassWithInitArgs(ActorRolloutRefWorker, arr, role="ref")
        if self.use_critic:
            critic = dataclasses.replace(cfg.critic, **self._per_gpu_sizes.get("critic", {}))
            classes[Role.Critic] = ClassWithInitArgs(CriticWorker, critic, rollout_n=arr.rollout.n,
                                                     total_training_steps=self.total_training_steps,
                                                     model_path=arr.model.path)
        if self.use_rm:
            rm = dataclasses.replace(cfg.reward_model, **self._per_gpu_sizes.get("reward_model", {}))
            classes[Role.RewardModel] = ClassWithInitArgs(RewardModelWorker, rm)
        return classes

    def _placement(self, roles) -> tuple[dict[str, list[int]], dict[Role, str]]:
        """Resource pools (processes per node) and the pool of each role: every role on every process
        (colocate), or actor/ref on the first half of each node's processes and the rest on the second (split)."""
        tr = self.config.trainer
        if tr.placement == "split":
            half = tr.n_gpus_per_node // 2
            spec = {"actor_pool": [half] * tr.nnodes, "critic_pool": [tr.n_gpus_per_node - half] * tr.nnodes}
            mapping = {r: "actor_pool" if r in (Role.ActorRollout, Role.RefPolicy) else "critic_pool" for r in roles}
        else:
            spec = {"global_pool": [tr.n_gpus_per_node] * tr.nnodes}
            mapping = {r: "global_pool" for r in roles}
        return spec, mapping

    def shutdown(self) -> None:
        """Stop the workers (processes, or in local mode the in-process ones) and release their resources."""
        for group in self._groups:
            group.kill()
        for pool in self._pools:
            pool.remove()
        self._groups, self._pools = [], []

    def _make_groups(self, classes: dict[Role, ClassWithInitArgs]) -> dict[str, tuple[WorkerGroup, list[Role]]]:
        """One worker group per resource pool, holding the roles mapped to it; local mode has one pool: this process."""
        spec, mapping = self._placement(classes)
        if self.execution_mode == "local":
            from verl.single_controller.base import create_colocated_worker_cls
            from verl.single_controller.local import LocalWorkerGroup

            def make_group(pool_name, cls, name_prefix):
                return LocalWorkerGroup(cls, name_prefix=name_prefix,
                                        call_timeout_s=self.config.trainer.worker_call_timeout_s)
        else:
            from verl.single_controller.ray import RayWorkerGroup, ResourcePoolManager, create_colocated_worker_cls

            manager = ResourcePoolManager(spec, mapping, use_gpu=self.device_name == "cuda")  # device-ok
            manager.create_resource_pool()
            self._pools = list(manager.resource_pool_dict.values())

            def make_group(pool_name, cls, name_prefix):
                return RayWorkerGroup(manager.resource_pool_dict[pool_name], cls, name_prefix=name_prefix,
                                      call_timeout_s=self.config.trainer.worker_call_timeout_s)

        groups = {}
        for pool_name in spec:
            roles = {r: c for r, c in classes.items() if mapping[r] == pool_name}
            if len(roles) == 1:
                (role, cls), = roles.items()
                groups[pool_name] = (make_group(pool_name, cls, role.value), [role])
            elif roles:
                colocated = create_colocated_worker_cls({r.value: c for r, c in roles.items()})
                groups[pool_name] = (make_group(pool_name, colocated, pool_name), list(roles))
        return groups

    def init_workers(self) -> None:
        """Create the worker groups (roles sharing a pool share its processes) and load the models."""
        self._groups = []
        self.worker_groups: dict[Role, Any] = {}
        try:
            for group, roles in self._make_groups(self._role_classes()).values():
                self._groups.append(group)
                if len(roles) == 1:
                    self.worker_groups[roles[0]] = group
                else:
                    views = group.spawn(prefix_set=[r.value for r in roles])
                    self.worker_groups.update({r: views[r.value] for r in roles})
        except BaseException:
            self.shutdown()
            raise
        for role in (Role.Critic, Role.RefPolicy, Role.RewardModel, Role.ActorRollout):  # the actor last
            if role in self.worker_groups:
                self.worker_groups[role].init_model()
        self.actor_rollout_wg = self.worker_groups[Role.ActorRollout]
        self.ref_policy_wg = self.worker_groups.get(Role.RefPolicy)
        self.critic_wg = self.worker_groups.get(Role.Critic)
        self.rm_wg = self.worker_groups.get(Role.RewardModel)
        self.n_workers = world_size(self.config)

    # ------------------------------------------------------------------------------------------ phases

    def _generate(self, batch: DataProto, timing: dict, metrics: dict) -> DataProto:
        """Attach a uid per prompt, repeat ``n`` times, generate; ReMax also gets a greedy baseline."""
        n = self.config.actor_rollout_ref.rollout.n
        batch.non_tensor_batch["uid"] = np.array([f"{self.global_steps}-{self._gen_calls}-{i}" for i in range(len(batch))],
                                                 dtype=object)
        gen_in = self._gen_input(batch)
        gen_in.meta_info["seed"] = self.config.trainer.seed * 1_000_003 + self._gen_calls
        with timer("gen", timing):
            out = self.actor_rollout_wg.generate_sequences(gen_in.repeat(n, interleave=True))
        metrics.update(reduce_worker_metrics(out))
        repeated = batch.repeat(n, interleave=True)
        result = DataProto(batch=out.batch, non_tensor_batch={**repeated.non_tensor_batch, **out.non_tensor_batch})
        metrics.update(self._multi_turn_metrics(result))
        if self.config.algorithm.adv_estimator == "remax":
            with timer("gen_max", timing):
                gen_in.meta_info["do_sample"] = False
                greedy = self.actor_rollout_wg.generate_sequences(gen_in)
                greedy = DataProto(batch=greedy.batch, non_tensor_batch=batch.non_tensor_batch)
                baseline, _ = self._score(greedy)
            result.batch["reward_baselines"] = baseline.sum(-1).repeat_interleave(n)
        self._gen_calls += 1
        return result

    def _gen_input(self, batch: DataProto) -> DataProto:
        """The prompt tensors, plus the columns and chat-template settings a multi-turn rollout reads."""
        multi_turn = self.config.actor_rollout_ref.rollout.multi_turn.enable
        keys = [k for k in MULTI_TURN_KEYS if k in batch.non_tensor_batch] if multi_turn else []
        gen_in = batch.select(batch_keys=GEN_KEYS, non_tensor_batch_keys=keys, meta_info_keys=[])
        if multi_turn and self.config.data.apply_chat_template_kwargs:
            gen_in.meta_info["apply_chat_template_kwargs"] = dict(self.config.data.apply_chat_template_kwargs)
        return gen_in

    def _multi_turn_metrics(self, batch: DataProto, prefix: str = "") -> dict[str, float]:
        if not self.config.actor_rollout_ref.rollout.multi_turn.enable:
            return {}
        from verl.rollout.agent.trajectory import multi_turn_metrics

        return multi_turn_metrics(batch.non_tensor_batch, prefix)

    def _score(self, batch: DataProto, validate: bool = False, faults=None) -> tuple[torch.Tensor, dict[str, list]]:
        """Token-level scores: the reward model's (if enabled) plus the reward function's, whose fault counts go
        to ``faults`` (a :class:`~verl.reward.faults.RewardFaultTracker`) when given."""
        from verl.reward.faults import score_batch

        scores = torch.zeros_like(batch.batch["responses"], dtype=torch.float32)
        extra: dict[str, list] = {}
        if self.use_rm:
            scores = scores + self.rm_wg.compute_rm_score(batch).batch["rm_scores"]
        if not self.use_rm or self.config.custom_reward_function.path:
            result = score_batch(batch, self.val_reward_fn if validate else self.reward_fn)
            if faults is not None:
                faults.add(result)
            fn_scores, extra = result.reward_tensor, result.extra
            scores = scores + fn_scores
        return scores, extra

    def _generate_and_score(self, batch: DataProto, timing: dict, metrics: dict) -> DataProto:
        """Generation + reward; with DAPO dynamic sampling, more batches until enough prompt groups vary."""
        fg = self.config.algorithm.filter_groups
        n = self.config.actor_rollout_ref.rollout.n
        want = self.config.data.train_batch_size
        kept: list[DataProto] = []
        num_kept = num_gen = 0
        while True:
            gen = self._generate(batch, timing, metrics)
            with timer("reward", timing):
                gen.batch["token_level_scores"], extra = self._score(gen, faults=self._reward_faults)
            num_gen += 1
            if not fg.enable:
                return gen
            values = batch_ops.sequence_metric(gen, fg.metric, extra)
            gen, n_keep, n_drop = batch_ops.filter_zero_variance_groups(gen, values)
            metrics["batch/num_filtered_groups"] = metrics.get("batch/num_filtered_groups", 0) + n_drop
            kept.append(gen)
            num_kept += n_keep
            if num_kept >= want:
                metrics["batch/num_gen_batches"] = num_gen
                return DataProto.concat(kept)[: want * n]
            if fg.max_num_gen_batches and num_gen >= fg.max_num_gen_batches:
                raise RuntimeError(
                    f"dynamic sampling kept {num_kept}/{want} prompt groups after {num_gen} generation batches "
                    "(algorithm.filter_groups.max_num_gen_batches); raise it or make the task less uniform"
                )
            batch = self._next_batch()

    def _balance(self, batch: DataProto) -> None:
        lengths = batch.batch["attention_mask"].sum(-1).tolist()
        batch.reorder(torch.tensor(batch_ops.balanced_order(lengths, self.n_workers)))

    def _compute_advantage(self, batch: DataProto, metrics: dict) -> DataProto:
        alg = self.config.algorithm
        if alg.use_kl_in_reward:
            batch, kl_metrics = apply_kl_penalty(batch, self.kl_ctrl, alg.kl_penalty)
            metrics.update(kl_metrics)
        else:
            batch.batch["token_level_rewards"] = batch.batch["token_level_scores"]
        b = batch.batch
        available = {"token_level_rewards": b["token_level_rewards"], "response_mask": b["response_mask"],
                     "index": batch.non_tensor_batch["uid"], "gamma": alg.gamma, "lam": alg.lam,
                     "norm_adv_by_std_in_grpo": alg.norm_adv_by_std_in_grpo}
        for key in ("values", "reward_baselines"):
            if key in b:
                available[key] = b[key]
        b["advantages"], b["returns"] = call_adv_estimator(alg.adv_estimator, **available)
        return batch

    def train_step(self, batch: DataProto) -> dict[str, float]:
        """One PPO step on a batch of prompts; returns its metrics."""
        metrics: dict[str, float] = {}
        timing: dict[str, float] = {}
        self._reward_faults.begin_step()
        with timer("step", timing):
            batch = self._generate_and_score(batch, timing, metrics)
            if self.config.trainer.balance_batch:
                self._balance(batch)
            from verl.workers.actor import is_on_policy

            actor = self.config.actor_rollout_ref.actor
            interval = actor.entropy_metric_interval
            batch.meta_info["calculate_entropy"] = actor.calculate_entropy or (
                interval > 0 and self.global_steps % interval == 0)
            # one epoch, one mini-batch: the update's own forward gives the old log-probs (ratio 1), unless the
            # driver needs them first (KL in the reward)
            rollout_n = self.config.actor_rollout_ref.rollout.n
            on_policy = is_on_policy(actor.ppo_epochs, len(batch), actor.ppo_mini_batch_size * rollout_n)
            rc = self.config.algorithm.rollout_correction
            with timer("old_log_prob", timing):
                if rc.bypass_mode:  # rollout correction, bypass mode: the rollout's log-probs are the old ones
                    batch.batch["old_log_probs"] = batch.batch["rollout_log_probs"]
                    batch.meta_info["rollout_correction_bypass"] = rc
                elif not on_policy or self.config.algorithm.use_kl_in_reward or rc.rollout_is or rc.rollout_rs:
                    old = self.actor_rollout_wg.compute_log_prob(batch)
                    entropy = old.batch.pop("entropys", None)
                    if entropy is not None:
                        mask = batch.batch["response_mask"]
                        metrics["actor/entropy"] = (entropy * mask).sum().item() / max(mask.sum().item(), 1)
                        batch.meta_info["calculate_entropy"] = False  # reported; the update need not recompute it
                    batch.union(old)
                    metrics.update(compute_rollout_probs_diff_metrics(batch))
                    if rc.rollout_is or rc.rollout_rs:  # decoupled: weights of pi_old / pi_rollout, rejections
                        from verl.trainer.ppo.rollout_corr_helper import apply_rollout_correction

                        metrics.update(apply_rollout_correction(batch, rc))
            if self.use_reference:
                with timer("ref", timing):
                    ref_wg = self.actor_rollout_wg if self.ref_in_actor else self.ref_policy_wg
                    batch.union(ref_wg.compute_ref_log_prob(batch))
            if self.use_critic:
                with timer("values", timing):
                    batch.union(self.critic_wg.compute_values(batch))
            with timer("adv", timing):
                batch = self._compute_advantage(batch, metrics)
            if self.use_critic:
                with timer("update_critic", timing):
                    metrics.update(reduce_worker_metrics(self.critic_wg.update_critic(batch)))
            if self.global_steps > self.config.trainer.critic_warmup:
                with timer("update_actor", timing):
                    metrics.update(reduce_worker_metrics(self.actor_rollout_wg.update_actor(batch)))
            if self.config.trainer.rollout_data_dir:
                batch_ops.dump_generations(self.config.trainer.rollout_data_dir, self.global_steps, self.tokenizer,
                                           batch, batch.batch["token_level_scores"].sum(-1))
        metrics.update(self._reward_faults.metrics())  # reward/num_errors, num_timeouts, num_invalid, frac_*
        metrics.update(compute_data_metrics(batch, self.use_critic))
        metrics.update(compute_timing_metrics(batch, timing))
        metrics.update(compute_throughput_metrics(batch, timing, self.n_workers))
        return metrics

    # ------------------------------------------------------------------------------------------ validation

    def validate(self) -> dict[str, float]:
        """Generate on the validation set with ``rollout.val_kwargs`` and score it per data source."""
        if self.val_dataloader is None:
            return {}
        n = self.config.actor_rollout_ref.rollout.val_kwargs.n
        self._val_reward_faults.begin_step()
        sources, uids, scores, preds, gens = [], [], [], [], []
        shown: list[dict] = []
        for k, batch_dict in enumerate(self.val_dataloader):
            batch = DataProto.from_single_dict(batch_dict)
            batch.non_tensor_batch["uid"] = np.array([f"val-{k}-{i}" for i in range(len(batch))], dtype=object)
            batch = batch.repeat(n, interleave=True)
            gen_in = self._gen_input(batch)
            gen_in.meta_info.update({"validate": True, "seed": self.config.trainer.seed * 1_000_003 - 1 - k})
            out = self.actor_rollout_wg.generate_sequences(gen_in)
            gen = DataProto(batch=out.batch, non_tensor_batch={**batch.non_tensor_batch, **out.non_tensor_batch})
            token_scores, extra = self._score(gen, validate=True, faults=self._val_reward_faults)
            seq_scores = token_scores.sum(-1)
            sources += [str(s) for s in gen.non_tensor_batch.get("data_source", ["unknown"] * len(gen))]
            uids += list(gen.non_tensor_batch["uid"])
            scores += seq_scores.tolist()
            preds += [str(p) for p in extra.get("pred", [None] * len(gen))]
            if self.config.actor_rollout_ref.rollout.multi_turn.enable:
                gens.append(gen)
            if self.config.trainer.validation_data_dir:
                batch_ops.dump_generations(self.config.trainer.validation_data_dir, f"val_{self.global_steps}",
                                           self.tokenizer, gen, seq_scores)
            wanted = self.config.trainer.log_val_generations - len(shown)
            if wanted > 0:  # trainer.log_val_generations: the first N samples, printed below
                shown += batch_ops.generation_rows(self.global_steps, self.tokenizer, gen[:wanted], seq_scores[:wanted])
        for row in shown:
            print(f"[validation step {row['step']}] score={row['score']:.3f}\n  input:  {row['input']!r}\n"
                  f"  output: {row['output']!r}", flush=True)
        has_preds = any(p != "None" for p in preds)
        metrics = process_validation_metrics(sources, uids, scores, preds if has_preds else None)
        metrics.update(self._val_reward_faults.metrics())  # val-aux/reward/num_errors, ...
        if gens:  # multi-turn: val-aux/num_turns/*, tool calls and failures
            metrics.update(self._multi_turn_metrics(DataProto.concat(gens), prefix="val-aux/"))
        return metrics

    # ------------------------------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> str:
        def write(dirs: CheckpointDirs) -> None:
            self.actor_rollout_wg.save_checkpoint(dirs.part("actor"), self.global_steps)
            if self.use_critic:
                self.critic_wg.save_checkpoint(dirs.part("critic"), self.global_steps)
            torch.save({"dataloader": self.train_dataloader.state_dict(), "global_steps": self.global_steps,
                        "kl_coef": self.kl_ctrl.value, "gen_calls": self._gen_calls}, dirs.part("trainer_state.pt"))

        path = publish_checkpoint(CheckpointDirs(self.local_dir, self.global_steps), write)
        prune_checkpoints(self.local_dir, self.config.trainer.max_actor_ckpt_to_keep)
        return path

    def load_checkpoint(self) -> None:
        tr = self.config.trainer
        if tr.resume_mode == "disable":
            return
        path = tr.resume_from_path if tr.resume_mode == "resume_path" else find_latest_checkpoint(self.local_dir)
        if path is None:
            return
        self.actor_rollout_wg.load_checkpoint(os.path.join(path, "actor"))
        if self.use_critic:
            self.critic_wg.load_checkpoint(os.path.join(path, "critic"))
        state = torch.load(os.path.join(path, "trainer_state.pt"), weights_only=False)
        self.train_dataloader.load_state_dict(state["dataloader"])
        self.global_steps = state["global_steps"]
        self.kl_ctrl.value = state["kl_coef"]
        self._gen_calls = state["gen_calls"]
        if tr.del_local_ckpt_after_load:  # verl's trainer.del_local_ckpt_after_load
            import shutil

            shutil.rmtree(path)
        print(f"resumed from {path} (step {self.global_steps})")

    # ------------------------------------------------------------------------------------------ the loop

    def _next_batch(self) -> DataProto:
        """The next training batch; epochs roll over (the loader's state says where a resume continues)."""
        if self._train_iter is None:
            self._train_iter = iter(self.train_dataloader)
        try:
            batch_dict = next(self._train_iter)
        except StopIteration:
            self._train_iter = iter(self.train_dataloader)
            batch_dict = next(self._train_iter)
        return DataProto.from_single_dict(batch_dict)

    def fit(self) -> dict[str, float]:
        """Train until ``total_training_steps``; returns the last step's metrics (with validation)."""
        from verl.reward.faults import RewardFaultError
        from verl.utils.tracking import Tracking

        tr = self.config.trainer
        self.logger = Tracking(project_name=tr.project_name, experiment_name=tr.experiment_name,
                               default_backend=tr.logger, config=to_dict(self.config), local_dir=self.local_dir)
        self.load_checkpoint()
        last: dict[str, float] = {}
        if tr.val_before_train or tr.val_only:
            last = self.validate()
            self.logger.log(last, step=self.global_steps)
            if tr.val_only:
                return last
        progress = tqdm(total=self.total_training_steps, initial=self.global_steps, desc="training", unit="step")
        from verl.utils.profiler.torch_profile import StepProfiler

        groups = {"actor_rollout": self.actor_rollout_wg, "ref": self.ref_policy_wg, "critic": self.critic_wg,
                  "rm": self.rm_wg}
        profiler = StepProfiler(self.config, groups)  # global_profiler.steps of the profiled roles
        while self.global_steps < self.total_training_steps:
            self.global_steps += 1
            profiler.start(self.global_steps)
            try:
                last = self.train_step(self._next_batch())
            except RewardFaultError:  # the stopping step's fault counts still reach every logger
                self.logger.log({**self._reward_faults.metrics(), "training/global_step": self.global_steps},
                                step=self.global_steps)
                self.logger.finish()
                raise
            profiler.stop(self.global_steps)
            is_last = self.global_steps == self.total_training_steps
            if tr.test_freq > 0 and (self.global_steps % tr.test_freq == 0 or is_last):
                last.update(self.validate())
            if tr.save_freq > 0 and (self.global_steps % tr.save_freq == 0 or is_last):
                self.save_checkpoint()
            last["training/global_step"] = self.global_steps
            last["training/epoch"] = self.train_dataloader.state_dict().get("epoch", 0)
            self.logger.log(last, step=self.global_steps)
            progress.update(1)
        progress.close()
        self.logger.finish()
        return last
