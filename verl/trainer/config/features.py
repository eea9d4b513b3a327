"""Checks of verl's feature keys that need more than one value: generation batch size (DAPO), rollout
correction, profiler, optimizer class and schedule. All run in :func:`validate_config`, before anything starts."""

from __future__ import annotations

import importlib
from typing import Any

from verl.utils.config import ConfigError

__all__ = ["check_features", "optimizer_class", "parse_rs_thresholds", "profiled_roles", "scheduler_type"]

SCHEDULES = ("constant", "cosine")
IS_LEVELS = ("token", "sequence")
RS_MODES = ("token_k1", "token_k2", "token_k3", "seq_sum_k1", "seq_sum_k2", "seq_sum_k3", "seq_mean_k1",
            "seq_mean_k2", "seq_mean_k3", "seq_max_k2", "seq_max_k3")
LOSS_TYPES = ("ppo_clip", "reinforce")


def scheduler_type(optim: Any) -> str:
    """The LR schedule after warm-up: ``warmup_style`` (deprecated spelling) or ``lr_decay_style`` (Megatron's)
    when set, else ``lr_scheduler_type``."""
    return optim.warmup_style or optim.lr_decay_style or optim.lr_scheduler_type


def optimizer_class(optim: Any, key: str = "optim") -> type:
    """The optimizer class ``optim.optimizer`` from module ``optim.optimizer_impl``."""
    try:
        module = importlib.import_module(optim.optimizer_impl)
    except ImportError as err:
        raise ConfigError(f"{key}.optimizer_impl={optim.optimizer_impl!r} cannot be imported ({err})") from None
    cls = getattr(module, optim.optimizer, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{key}.optimizer={optim.optimizer!r} is not a class of {optim.optimizer_impl}")
    return cls


def parse_rs_thresholds(rs: str, threshold: Any) -> list[tuple[str, float | None, float]]:
    """``[(mode, lower or None, upper)]`` from ``rollout_rs`` and ``rollout_rs_threshold`` (verl's spelling:
    comma-separated modes; thresholds one per mode or one broadcast; ``k1`` modes take ``"lower_upper"`` ratio
    bounds, a single number u meaning ``1/u`` to ``u``; ``k2``/``k3`` modes take an upper bound)."""
    key = "algorithm.rollout_correction"
    modes = [m.strip() for m in str(rs).split(",") if m.strip()]
    unknown = [m for m in modes if m not in RS_MODES]
    if unknown:
        raise ConfigError(f"{key}.rollout_rs has unknown mode(s) {unknown}; use any of {list(RS_MODES)}")
    if threshold is None:
        raise ConfigError(f"{key}.rollout_rs={rs} needs {key}.rollout_rs_threshold (one per mode)")
    specs = [t.strip() for t in str(threshold).split(",")] if isinstance(threshold, str) else [threshold]
    if len(specs) == 1:
        specs = specs * len(modes)
    if len(specs) != len(modes):
        raise ConfigError(f"{key}.rollout_rs_threshold={threshold!r}: give one threshold per rollout_rs mode "
                          f"({len(modes)}) or one for all")
    out = []
    for mode, spec in zip(modes, specs):
        try:
            if isinstance(spec, str) and "_" in spec:
                if not mode.endswith("k1"):
                    raise ValueError
                low, high = (float(x) for x in spec.split("_", 1))
            else:
                high = float(spec)
                low = 1.0 / high if mode.endswith("k1") else None
        except ValueError:
            raise ConfigError(f"{key}.rollout_rs_threshold entry {spec!r} for {mode}: k1 modes take 'lower_upper' "
                              "ratio bounds or one upper ratio; k2/k3 modes one positive number") from None
        if high <= 0 or (low is not None and not 0 < low < high):
            raise ConfigError(f"{key}.rollout_rs_threshold entry {spec!r} for {mode}: bounds must be positive, "
                              "lower < upper")
        out.append((mode, low, high))
    return out


def _check_rollout_correction(config: Any) -> None:
    rc, key = config.algorithm.rollout_correction, "algorithm.rollout_correction"
    if rc.rollout_is is not None and rc.rollout_is not in IS_LEVELS:
        raise ConfigError(f"{key}.rollout_is={rc.rollout_is!r}: use token, sequence or null")
    if rc.loss_type not in LOSS_TYPES:
        raise ConfigError(f"{key}.loss_type={rc.loss_type!r}: use one of {list(LOSS_TYPES)}")
    if rc.rollout_is is not None and rc.rollout_is_threshold <= 0:
        raise ConfigError(f"{key}.rollout_is_threshold={rc.rollout_is_threshold} must be > 0")
    if rc.rollout_rs is not None:
        parse_rs_thresholds(rc.rollout_rs, rc.rollout_rs_threshold)
    on = rc.rollout_is is not None or rc.rollout_rs is not None or rc.bypass_mode
    if on and not config.actor_rollout_ref.rollout.calculate_log_probs:
        raise ConfigError(f"{key} compares the rollout's log-probs with the trainer's: set "
                          "actor_rollout_ref.rollout.calculate_log_probs=true")
    if on and config.actor_rollout_ref.actor.tis_imp_ratio_cap > 0:
        raise ConfigError(f"actor_rollout_ref.actor.tis_imp_ratio_cap and {key} both weight the loss by rollout "
                          f"importance ratios; use {key}.rollout_is=token with rollout_is_threshold instead")
    if not rc.bypass_mode and rc.loss_type != "ppo_clip":
        raise ConfigError(f"{key}.loss_type={rc.loss_type} applies to bypass mode; set {key}.bypass_mode=true")


def profiled_roles(config: Any) -> dict[str, Any]:
    """``{role: its profiler section}`` of the roles with ``profiler.enable`` (and a tool to run)."""
    arr = config.actor_rollout_ref
    sections = {"actor_rollout": arr.actor.profiler, "ref": arr.ref.profiler, "critic": config.critic.profiler,
                "rm": config.reward_model.profiler}
    if arr.rollout.profiler.enable and not arr.actor.profiler.enable:
        sections["actor_rollout"] = arr.rollout.profiler
    tool = config.global_profiler.tool
    return {role: p for role, p in sections.items() if p.enable and (p.tool or tool)}


def _check_profiler(config: Any) -> None:
    gp = config.global_profiler
    if gp.steps is not None and any(s < 1 for s in gp.steps):
        raise ConfigError(f"global_profiler.steps={gp.steps}: steps count from 1")
    tools = {p.tool or gp.tool for p in profiled_roles(config).values()}
    if "torch_memory" in tools:
        from verl.trainer.config.validate import resolve_device

        if resolve_device(config) == "cpu":
            raise ConfigError("global_profiler.tool=torch_memory records CUDA memory history and needs a GPU; "
                              "use global_profiler.tool=torch (with tool_config.torch.contents=[memory]) on CPU")


def _check_gen_batch_size(config: Any) -> None:
    data, fg = config.data, config.algorithm.filter_groups
    if data.gen_batch_size is None:
        return
    if data.gen_batch_size < 1:
        raise ConfigError(f"data.gen_batch_size={data.gen_batch_size} must be >= 1 (or null = train_batch_size)")
    if not fg.enable and data.gen_batch_size != data.train_batch_size:
        raise ConfigError(f"data.gen_batch_size={data.gen_batch_size} differs from data.train_batch_size="
                          f"{data.train_batch_size} without dynamic sampling: set algorithm.filter_groups.enable=true "
                          "(DAPO), or drop gen_batch_size")


def check_features(config: Any) -> None:
    """Raise :class:`ConfigError` for a bad combination of the feature keys above."""
    arr = config.actor_rollout_ref
    for key, optim in (("actor_rollout_ref.actor.optim", arr.actor.optim), ("critic.optim", config.critic.optim)):
        optimizer_class(optim, key)
        style = scheduler_type(optim)
        if style not in SCHEDULES:
            raise ConfigError(f"{key}.lr_scheduler_type (or warmup_style / lr_decay_style)={style!r}: use one of "
                              f"{list(SCHEDULES)}")
    if arr.nccl_timeout < 1:
        raise ConfigError(f"actor_rollout_ref.nccl_timeout={arr.nccl_timeout} must be >= 1 second")
    _check_rollout_correction(config)
    _check_profiler(config)
    _check_gen_batch_size(config)
    from verl.reward.loop.checks import check_reward_loop

    check_reward_loop(config)  # reward_model.use_reward_loop / num_workers / rollout.*
