"""verl's newer SFT config, ``sft_trainer_engine`` (``model`` / ``engine`` / ``optim`` / ``profiler`` / ``data`` /
``checkpoint`` / ``trainer``), read by this library's SFT trainer.

``python -m verl.trainer.sft_trainer key=value ...`` (or ``fsdp_sft_trainer --config-name sft_trainer_engine``)
composes :class:`SFTEngineConfig`; :meth:`SFTEngineConfig.to_sft_config` turns it into the trainer's
:class:`~verl.trainer.sft.config.SFTConfig`, refusing (naming the key) a value this library cannot run. The data
are chat conversations (``data.messages_key``), as in verl's engine trainer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from verl.data.sft_dataset import MultiturnConfig, SFTDataConfig
from verl.trainer.sft.config import SFTConfig, SFTFSDPConfig, SFTModelConfig, SFTOptimConfig, SFTTrainerSection
from verl.utils.config import ConfigError, iter_fields
from verl.utils.profiler.config import ProfilerConfig
from verl.workers.config import CheckpointConfig, FSDPConfig, ModelConfig, OptimConfig

__all__ = ["SFTEngineConfig", "SFTEngineDataConfig", "SFTEngineTrainerConfig"]

PAD_MODES = ("no_padding", "right", "left_right")


@dataclass
class SFTEngineDataConfig:
    """``data.*`` of verl's engine SFT config: conversations, one per row."""

    train_batch_size: int = 256
    """Sequences per optimizer step, globally."""
    micro_batch_size_per_gpu: int = 4
    """Sequences per forward/backward on one rank (also the validation batch)."""
    max_token_len_per_gpu: int = 8192
    """Token budget of a micro-batch with ``use_dynamic_bsz``."""
    use_dynamic_bsz: bool = True
    """Pack micro-batches by ``max_token_len_per_gpu`` tokens."""
    train_files: str | list[str] | None = None
    """Parquet/JSON(L) file(s) of conversations."""
    val_files: str | list[str] | None = None
    """Validation file(s); None = no validation."""
    train_max_samples: int = -1
    """Use at most this many training rows (-1: all)."""
    val_max_samples: int = -1
    """Use at most this many validation rows (-1: all)."""
    messages_key: str = "messages"
    """Column with the list of chat messages."""
    tools_key: str = "tools"
    """Column with tool schemas (optional)."""
    enable_thinking_key: str = "enable_thinking"
    """Column with a per-row ``enable_thinking`` flag for the chat template (optional)."""
    pad_mode: str = "no_padding"
    """``no_padding`` (sequences packed, ``use_remove_padding``) or ``right`` / ``left_right`` (padded rows)."""
    max_length: int = 1024
    """Longest tokenized conversation."""
    truncation: str = "error"
    """``error``, ``left``, ``right`` or ``middle``."""
    balance_dp_token: bool = False
    """Balance tokens across ranks (not available: only false)."""
    custom_cls: dict[str, Any] = field(default_factory=lambda: {"path": None, "name": None})
    """A custom dataset class (not available: only nulls)."""
    use_shm: bool = False
    """Data in shared memory (not available: only false)."""
    apply_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``apply_chat_template`` arguments."""
    ignore_input_ids_mismatch: bool = False
    """verl: accept per-turn tokenization that differs from the whole conversation's. Here the conversation is
    tokenized whole and the assistant spans located in it, so there is no mismatch (any value, same data)."""


@dataclass
class SFTEngineTrainerConfig(SFTTrainerSection):
    """``trainer.*``: as in ``sft_trainer``, plus verl's ``profile_interval``."""

    profile_interval: list[int] = field(default_factory=lambda: [-1, -1])
    """Steps to profile (read only with ``profiler.enable``, which is refused)."""


@dataclass
class SFTEngineConfig:
    """verl's ``sft_trainer_engine`` config."""

    config_names: ClassVar[tuple[str, ...]] = ("sft_trainer_engine",)

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model (verl's ``hf_model`` group)."""
    engine: FSDPConfig = field(default_factory=lambda: FSDPConfig(strategy="fsdp"))
    """FSDP settings (verl's ``engine/fsdp`` group)."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3))
    """Optimizer and schedule (verl's ``optim/fsdp`` group, with its defaults: lr 1e-3, constant schedule)."""
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)
    """Profiling (not available for SFT: ``enable`` only false)."""
    data: SFTEngineDataConfig = field(default_factory=SFTEngineDataConfig)
    """Conversations and batch sizes."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint contents."""
    trainer: SFTEngineTrainerConfig = field(default_factory=SFTEngineTrainerConfig)
    """Run length, logging and checkpoints."""

    def to_sft_config(self) -> SFTConfig:
        """The SFT trainer's config; raises :class:`ConfigError` naming a key that cannot run here."""
        _check_fixed(self)
        m, e, o, d = self.model, self.engine, self.optim, self.data
        if d.pad_mode not in PAD_MODES:
            raise ConfigError(f"data.pad_mode={d.pad_mode!r}: use one of {list(PAD_MODES)}")
        if not m.path:
            raise ConfigError("model.path is empty; set it to a local transformers model directory")
        if e.param_offload or e.optimizer_offload:
            raise ConfigError("engine.param_offload / engine.optimizer_offload are not supported by the SFT trainer; "
                              "remove them (use gradient checkpointing or LoRA)")
        if self.profiler.enable:
            raise ConfigError("profiler.enable=true: profiling of the SFT trainer is not available (the PPO trainer "
                              "has global_profiler); remove the override")
        refused = {"optim.optimizer": (o.optimizer, "AdamW"), "optim.optimizer_impl": (o.optimizer_impl, "torch.optim"),
                   "optim.override_optimizer_config": (o.override_optimizer_config, None),
                   "optim.lr_warmup_steps": (o.lr_warmup_steps, -1), "optim.num_cycles": (o.num_cycles, 0.5),
                   "optim.lr_decay_style": (o.lr_decay_style, None)}
        for key, (value, only) in refused.items():
            if value != only:
                raise ConfigError(f"{key}={value!r} is not supported by the SFT trainer (AdamW, warm-up by "
                                  f"optim.lr_warmup_steps_ratio, cosine or constant schedule); accepted: {only!r}")
        lora = {"lora_rank": m.lora_rank, "lora_alpha": m.lora_alpha, "target_modules": m.target_modules,
                "exclude_modules": m.exclude_modules, "lora_adapter_path": m.lora_adapter_path}
        if m.lora:  # verl's nested spelling, model.lora.*
            from verl.workers.lora_nested import flat_lora_keys

            try:
                lora.update(flat_lora_keys(dict(m.lora), "model"))
            except ValueError as err:
                raise ConfigError(str(err)) from None
        fsdp = SFTFSDPConfig(**{f.name: getattr(e, f.name) for f in dataclasses.fields(FSDPConfig)
                                if f.name not in ("ulysses_sequence_parallel_size", "strategy")})
        model = SFTModelConfig(
            partial_pretrain=m.path, tokenizer_path=m.tokenizer_path, trust_remote_code=m.trust_remote_code,
            external_lib=m.external_lib, override_config=dict(m.override_config),
            enable_gradient_checkpointing=m.enable_gradient_checkpointing, attn_implementation=m.attn_implementation,
            strategy=e.strategy, **lora, use_shm=m.use_shm, use_liger=m.use_liger, fsdp_config=fsdp)
        optim = SFTOptimConfig(lr=o.lr, betas=list(o.betas), eps=o.eps, weight_decay=o.weight_decay,
                               lr_warmup_steps_ratio=o.lr_warmup_steps_ratio,
                               lr_scheduler=o.warmup_style or o.lr_scheduler_type, min_lr_ratio=o.min_lr_ratio,
                               clip_grad=o.clip_grad)
        data = SFTDataConfig(
            train_files=d.train_files, val_files=d.val_files,
            multiturn=MultiturnConfig(enable=True, messages_key=d.messages_key, tools_key=d.tools_key,
                                      enable_thinking_key=d.enable_thinking_key),
            max_length=d.max_length, truncation=d.truncation, train_batch_size=d.train_batch_size,
            micro_batch_size_per_gpu=d.micro_batch_size_per_gpu, use_dynamic_bsz=d.use_dynamic_bsz,
            max_token_len_per_gpu=d.max_token_len_per_gpu, chat_template=m.custom_chat_template,
            apply_chat_template_kwargs=dict(d.apply_chat_template_kwargs), train_max_samples=d.train_max_samples,
            val_max_samples=d.val_max_samples, balance_dp_token=d.balance_dp_token, use_shm=d.use_shm,
            custom_cls=dict(d.custom_cls))
        trainer = SFTTrainerSection(**{f.name: getattr(self.trainer, f.name)
                                       for f in dataclasses.fields(SFTTrainerSection) if f.name != "checkpoint"},
                                    checkpoint=self.checkpoint)
        return SFTConfig(data=data, model=model, optim=optim, use_remove_padding=d.pad_mode == "no_padding",
                         ulysses_sequence_parallel_size=e.ulysses_sequence_parallel_size, trainer=trainer)


# PPO's rules for the same keys (verl.trainer.config.compat.FIXED): the engine-config key -> the PPO key they mirror
_PPO_KEY = {"model.": "actor_rollout_ref.model.", "engine.": "actor_rollout_ref.actor.fsdp_config.",
            "optim.": "actor_rollout_ref.actor.optim."}


def _check_fixed(cfg: SFTEngineConfig) -> None:
    from verl.trainer.config.compat import fixed_rule

    for key, value, _ in iter_fields(cfg):
        prefix = next((p for p in _PPO_KEY if key.startswith(p)), None)
        if prefix is None or key in ("engine.forward_only", "engine.strategy"):
            continue
        rule = fixed_rule(_PPO_KEY[prefix] + key[len(prefix):])
        if rule is not None and not any(value == a and type(value) is not bool or value is a for a in rule[0]):
            raise ConfigError(f"{key}={value!r} is not supported: {rule[1]}")
    if cfg.engine.forward_only:
        raise ConfigError("engine.forward_only=true: the SFT model trains")
