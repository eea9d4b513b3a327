"""Value ranges and names of single keys, checked before anything starts (:func:`check_value_ranges`).

One table of rules, each a key pattern (``fnmatch`` on the dotted key, so ``*.optim.lr`` covers the actor's,
the critic's and any other section's learning rate), a test and what the value must be. A value outside its
range is refused with a :class:`ConfigError` naming the key, e.g. ``actor_rollout_ref.actor.grad_clip=-1.0 must
be > 0 (the largest gradient norm kept; a negative value reverses the update, 0 zeroes it)``. Checks that need
several keys at once live in :mod:`verl.trainer.config.validate`.

To add a key with a range: add a row to :data:`RULES`. The rollout section's ranges are checked by
:meth:`verl.rollout.config.RolloutConfig.validate`, multi-turn's by its own ``validate``.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Callable
from typing import Any

from verl.utils.config import ConfigError, iter_fields

__all__ = ["ATTN_IMPLEMENTATIONS", "DTYPE_NAMES", "FREE_KEYS", "RULES", "STRATEGIES", "check_value_ranges"]

DTYPE_NAMES = ("bf16", "bfloat16", "fp16", "float16", "fp32", "float32")
"""Dtype names the FSDP sections accept (``verl.workers.fsdp.DTYPES``)."""
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
"""``attn_implementation`` values transformers knows and the models here can load with."""
STRATEGIES = ("fsdp", "fsdp2")
CHECKPOINT_CONTENTS = ("model", "optimizer", "extra", "hf_model")


def _num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def gt(bound: float) -> Callable[[Any], bool]:
    return lambda v: _num(v) and v > bound


def ge(bound: float) -> Callable[[Any], bool]:
    return lambda v: _num(v) and v >= bound


def between(low: float, high: float, open_low: bool = False, open_high: bool = False) -> Callable[[Any], bool]:
    def test(v: Any) -> bool:
        return _num(v) and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)

    return test


def optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or test(v)


def off_or(off: Any, test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v == off or test(v)


def one_of(*names: Any) -> Callable[[Any], bool]:
    return lambda v: v in names


def subset_of(*names: Any) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple)) and all(x in names for x in v)


def _betas(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_num(b) and 0 <= b < 1 for b in v)


# (key pattern, test, what the value must be). The first matching rule of a key applies.
RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    # optimisation
    ("*.grad_clip", gt(0), "must be > 0 (the largest gradient norm kept; a negative value reverses the update, 0 "
                           "zeroes it)"),
    ("*.optim.clip_grad", gt(0), "must be > 0 (the largest gradient norm kept; a negative value reverses the update, "
                                 "0 zeroes it)"),
    ("*.optim.lr", ge(0), "must be >= 0 (a negative learning rate climbs the loss)"),
    ("*.optim.weight_decay", ge(0), "must be >= 0"),
    ("*.optim.eps", gt(0), "must be > 0"),
    ("*.optim.betas", _betas, "must be two numbers in [0, 1)"),
    ("*.optim.lr_warmup_steps", ge(-1), "must be >= 0 (or -1: use lr_warmup_steps_ratio)"),
    ("*.optim.lr_warmup_steps_ratio", between(0, 1), "must be in [0, 1] (a fraction of the training steps)"),
    ("*.optim.min_lr_ratio", between(0, 1), "must be in [0, 1] (a fraction of lr)"),
    ("*.optim.num_cycles", gt(0), "must be > 0"),
    ("*.optim.total_training_steps", off_or(-1, ge(1)), "must be >= 1 (or -1: derived by the trainer)"),
    ("*.ppo_epochs", ge(1), "must be >= 1 (passes over each batch; 0 would train nothing)"),
    ("*.ppo_mini_batch_size", ge(1), "must be >= 1"),
    ("*micro_batch_size_per_gpu", optional(ge(1)), "must be >= 1 (or null)"),
    ("*max_token_len_per_gpu", ge(1), "must be >= 1 token"),
    ("*.ulysses_sequence_parallel_size", ge(1), "must be >= 1"),
    # policy loss
    ("*.clip_ratio", gt(0), "must be > 0 (the PPO clip range epsilon)"),
    ("*.clip_ratio_low", optional(ge(0)), "must be >= 0 (or null: clip_ratio)"),
    ("*.clip_ratio_high", optional(ge(0)), "must be >= 0 (or null: clip_ratio)"),
    ("*.clip_ratio_c", gt(1), "must be > 1 (the dual-clip bound on the ratio)"),
    ("*.kl_loss_coef", ge(0), "must be >= 0"),
    ("*.entropy_coeff", _num, "must be a finite number"),
    ("*.entropy_metric_interval", ge(0), "must be >= 0 (0: never)"),
    ("*.tis_imp_ratio_cap", off_or(-1, gt(0)), "must be > 0 (or -1: off)"),
    ("*.tau_pos", gt(0), "must be > 0"),
    ("*.tau_neg", gt(0), "must be > 0"),
    ("*.policy_loss.clip_cov_ratio", between(0, 1, open_low=True), "must be in (0, 1]"),
    ("*.policy_loss.kl_cov_ratio", between(0, 1, open_low=True), "must be in (0, 1]"),
    ("*.policy_loss.clip_cov_lb", _num, "must be a finite number"),
    ("*.policy_loss.clip_cov_ub", _num, "must be a finite number"),
    ("*.policy_loss.ppo_kl_coef", ge(0), "must be >= 0"),
    ("critic.cliprange_value", gt(0), "must be > 0"),
    # models and sharding
    ("*.fsdp_config.fsdp_size", off_or(-1, ge(1)), "must be >= 1 (or -1: all ranks)"),
    ("*.fsdp_config.model_dtype", one_of(*DTYPE_NAMES), f"is not a dtype name; use one of {list(DTYPE_NAMES)}"),
    ("*.mixed_precision.*_dtype", one_of(*DTYPE_NAMES), f"is not a dtype name; use one of {list(DTYPE_NAMES)}"),
    ("*.attn_implementation", one_of(*ATTN_IMPLEMENTATIONS), f"is not an attention implementation; use one of "
                                                             f"{list(ATTN_IMPLEMENTATIONS)}"),
    ("*.fsdp_config.strategy", one_of(*STRATEGIES), f"must be one of {list(STRATEGIES)} (both run FSDP2)"),
    ("*.strategy", one_of(*STRATEGIES, "megatron"), f"must be one of {[*STRATEGIES, 'megatron']} (all run FSDP2; "
                                                    "megatron: torch-native tensor parallelism x FSDP2)"),
    ("*.checkpoint.save_contents", subset_of(*CHECKPOINT_CONTENTS),
     f"may only name {list(CHECKPOINT_CONTENTS)}"),
    ("*.checkpoint.load_contents", subset_of(*CHECKPOINT_CONTENTS),
     f"may only name {list(CHECKPOINT_CONTENTS)}"),
    ("*.seed", ge(0), "must be >= 0"),
    ("*.data_loader_seed", ge(0), "must be >= 0"),
    ("actor_rollout_ref.model.lora_rank", ge(0), "must be >= 0 (0: full fine-tuning)"),
    ("actor_rollout_ref.model.lora_alpha", gt(0), "must be > 0"),
    ("actor_rollout_ref.nccl_timeout", ge(1), "must be >= 1 second"),
    ("*.wrap_policy.min_num_params", ge(0), "must be >= 0"),
    ("*.torch_memory.trace_alloc_max_entries", ge(1), "must be >= 1"),
    ("*.torch_memory.stack_depth", ge(1), "must be >= 1"),
    # data
    ("data.max_prompt_length", ge(1), "must be >= 1"),
    ("data.max_response_length", ge(1), "must be >= 1"),
    ("data.train_batch_size", ge(1), "must be >= 1"),
    ("data.val_batch_size", optional(ge(1)), "must be >= 1 (or null: the whole validation set at once)"),
    ("data.gen_batch_size", optional(ge(1)), "must be >= 1 (or null: train_batch_size)"),
    ("data.train_max_samples", off_or(-1, ge(1)), "must be >= 1 (or -1: all rows)"),
    ("data.val_max_samples", off_or(-1, ge(1)), "must be >= 1 (or -1: all rows)"),
    ("data.dataloader_num_workers", ge(0), "must be >= 0"),
    ("data.filter_overlong_prompts_workers", ge(1), "must be >= 1"),
    # algorithm
    ("algorithm.gamma", between(0, 1), "must be in [0, 1]"),
    ("algorithm.lam", between(0, 1), "must be in [0, 1]"),
    ("algorithm.kl_ctrl.kl_coef", ge(0), "must be >= 0"),
    ("algorithm.kl_ctrl.horizon", ge(1), "must be >= 1"),
    ("algorithm.kl_ctrl.target_kl", gt(0), "must be > 0"),
    ("algorithm.filter_groups.max_num_gen_batches", ge(0), "must be >= 0 (0: no limit)"),
    ("algorithm.rollout_correction.rollout_is_threshold", gt(0), "must be > 0"),
    # reward
    ("reward_model.max_length", optional(ge(1)), "must be >= 1 (or null: no limit)"),
    ("reward_model.num_workers", ge(1), "must be >= 1"),
    ("reward_model.sandbox_fusion.max_concurrent", ge(1), "must be >= 1"),
    ("reward_model.sandbox_fusion.memory_limit_mb", ge(1), "must be >= 1"),
    ("reward_model.overlong_buffer.len", ge(0), "must be >= 0"),
    ("reward_model.overlong_buffer.penalty_factor", ge(0), "must be >= 0 (a negative factor rewards overlong "
                                                           "responses)"),
    # trainer
    ("trainer.total_epochs", ge(1), "must be >= 1"),
    ("trainer.total_training_steps", optional(ge(1)), "must be >= 1 (or null: total_epochs x batches)"),
    ("trainer.nnodes", ge(1), "must be >= 1"),
    ("trainer.n_gpus_per_node", ge(1), "must be >= 1"),
    ("trainer.save_freq", ge(-1), "must be >= 1 (or -1: never)"),
    ("trainer.test_freq", ge(-1), "must be >= 1 (or -1: never)"),
    ("trainer.critic_warmup", ge(0), "must be >= 0"),
    ("trainer.log_val_generations", ge(0), "must be >= 0"),
    ("trainer.max_failed_reward_steps", ge(0), "must be >= 0 (0: never stop)"),
    ("trainer.worker_call_timeout_s", optional(ge(0)), "must be >= 0 seconds (0 or null: no watchdog)"),
    ("ray_init.num_cpus", optional(ge(1)), "must be >= 1 (or null)"),
]

FREE_KEYS = (
    "*max_ckpt_to_keep",  # <= 0 or null keeps every checkpoint, as in verl
    "*.max_actor_ckpt_to_keep",
    "*.max_critic_ckpt_to_keep",
    "*.esi_redundant_time",
    "*.ray_wait_register_center_timeout",
)
"""Numeric keys every value of which means something."""


def check_value_ranges(config: Any) -> None:
    """Raise :class:`ConfigError` naming the first key whose value is outside its range (see :data:`RULES`)."""
    for key, value, _ in iter_fields(config):
        # a free-form mapping (``override_config``) is checked one level down: verl spells the attention
        # implementation ``model.override_config.attn_implementation``
        entries = [(f"{key}.{k}", v) for k, v in value.items()] if isinstance(value, dict) else [(key, value)]
        for entry_key, entry in entries:
            rule = rule_for(entry_key)
            if rule is not None and not rule[1](entry):
                raise ConfigError(f"{entry_key}={entry!r} {rule[2]}")
    policy_loss = config.actor_rollout_ref.actor.policy_loss
    if policy_loss.clip_cov_lb >= policy_loss.clip_cov_ub:
        raise ConfigError(f"actor_rollout_ref.actor.policy_loss.clip_cov_lb={policy_loss.clip_cov_lb} must be below "
                          f"clip_cov_ub={policy_loss.clip_cov_ub}")
    reward_kwargs = getattr(getattr(config, "reward_model", None), "reward_kwargs", None) or {}
    if "timeout_s" in reward_kwargs:
        from verl.reward.base import check_timeout

        try:
            check_timeout(reward_kwargs["timeout_s"])
        except ValueError as err:
            raise ConfigError(str(err)) from None


def rule_for(key: str) -> tuple[str, Callable[[Any], bool], str] | None:
    """The rule that applies to the dotted ``key`` (the first whose pattern matches), or ``None``."""
    for rule in RULES:
        if fnmatch.fnmatchcase(key, rule[0]):
            return rule
    return None
