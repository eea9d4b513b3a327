"""The SFT trainer's config tree (verl's ``sft_trainer`` keys): ``data``, ``model``, ``optim``, ``trainer``.

Sizes named ``*_per_gpu`` count sequences on one rank and change only speed and memory; ``train_batch_size``
counts sequences per optimizer step, globally. Derived per-rank sizes are computed by the trainer and never
written back here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from verl.data.sft_dataset import SFTDataConfig
from verl.utils.config import ConfigError
from verl.workers.config import CheckpointConfig, FSDPConfig, OptimConfig
from verl.workers.lora import LoraSpec

__all__ = ["SFTConfig", "SFTModelConfig", "SFTOptimConfig", "SFTTrainerSection"]


@dataclass
class SFTModelConfig:
    """``model.*``: the model being fine-tuned."""

    partial_pretrain: str = ""
    """Local directory of the transformers causal LM to start from (config, weights, tokenizer)."""
    tokenizer_path: str | None = None
    """Tokenizer directory when it differs from ``partial_pretrain``."""
    trust_remote_code: bool = False
    """Allow model code shipped with the checkpoint."""
    external_lib: str | None = None
    """A module imported before loading (registers custom architectures)."""
    override_config: dict[str, Any] = field(default_factory=dict)
    """Entries that override the model's ``config.json`` (e.g. ``+model.override_config.attention_dropout=0``)."""
    enable_gradient_checkpointing: bool = True
    """Recompute activations in backward to save memory."""
    attn_implementation: str = "sdpa"
    """transformers attention implementation: ``sdpa``, ``eager`` or ``flash_attention_2`` when installed."""
    strategy: str = "fsdp2"
    """Training backend: ``fsdp2`` (``fsdp`` is accepted as the same)."""
    lora_rank: int = 0
    """LoRA rank: > 0 trains peft LoRA adapters of this rank (base weights frozen); 0 = full fine-tuning."""
    lora_alpha: float = 16
    """LoRA alpha: the adapters' output is scaled by ``lora_alpha / lora_rank``."""
    target_modules: Any = "all-linear"
    """Linear layers LoRA adapts: ``all-linear`` (every linear layer but the LM head) or a list of module names."""
    exclude_modules: Any = None
    """Module names LoRA leaves out of ``target_modules`` (a name or a list), or null."""
    lora_adapter_path: str | None = None
    """A saved peft LoRA adapter to start from and keep training (its rank, alpha and targets are used)."""
    use_shm: bool = False
    """Copy the model directory to ``/dev/shm`` once and load it from there."""
    use_liger: bool = False
    """Liger kernels; not integrated here (must stay false)."""
    fsdp_config: SFTFSDPConfig = field(default_factory=lambda: SFTFSDPConfig())
    """Sharding and precision (``model_dtype`` master weights, bf16 compute on accelerators)."""


@dataclass
class SFTFSDPConfig(FSDPConfig):
    """The SFT model's FSDP section, with the two offload keys of verl's SFT config."""

    cpu_offload: bool = False
    """verl's FSDP1 CPU offload of the SFT model (not supported by the SFT trainer: only false)."""
    offload_params: bool = False
    """verl's FSDP1 parameter offload of the SFT model (not supported by the SFT trainer: only false)."""


@dataclass
class SFTOptimConfig:
    """``optim.*``: AdamW with linear warm-up then a cosine (or constant) schedule."""

    lr: float = 1e-5
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    lr_warmup_steps_ratio: float | None = None
    """verl's newer spelling of ``warmup_steps_ratio``; when set it wins."""
    warmup_steps_ratio: float = 0.1
    """Linear warm-up over this fraction of the total training steps."""
    lr_scheduler: str = "cosine"
    """Schedule after warm-up: ``cosine`` (down to ``min_lr_ratio``) or ``constant``."""
    min_lr_ratio: float = 0.0
    """Floor of the cosine schedule, as a fraction of ``lr``."""
    clip_grad: float = 1.0
    """Clip the global gradient norm to this value."""

    def to_optim_config(self) -> OptimConfig:
        """The equivalent worker :class:`OptimConfig` (what ``build_optimizer`` / ``build_lr_scheduler`` take)."""
        ratio = self.warmup_steps_ratio if self.lr_warmup_steps_ratio is None else self.lr_warmup_steps_ratio
        return OptimConfig(lr=self.lr, lr_warmup_steps=-1, lr_warmup_steps_ratio=ratio,
                           warmup_style=self.lr_scheduler, min_lr_ratio=self.min_lr_ratio,
                           weight_decay=self.weight_decay, betas=list(self.betas), eps=self.eps)


@dataclass
class SFTTrainerSection:
    """``trainer.*``: run length, logging, evaluation and checkpoints."""

    default_hdfs_dir: str | None = None
    """Copy checkpoints to HDFS (not available: only null)."""
    default_local_dir: str = "checkpoints/${trainer.project_name}/${trainer.experiment_name}"
    """Checkpoints go to ``<default_local_dir>/global_step_N/``; the ``file`` logger writes ``metrics.jsonl`` here."""
    project_name: str = "gsm8k-sft"
    """Project name for the loggers."""
    experiment_name: str = "test"
    """Run name for the loggers."""
    total_epochs: int = 4
    """Passes over the training set."""
    total_training_steps: int | None = None
    """Optimizer steps of the run; overrides ``total_epochs`` when set."""
    logger: list[str] = field(default_factory=lambda: ["console"])
    """Backends: ``console``, ``file``, ``tensorboard``, ``wandb``, ``mlflow``, ``swanlab``."""
    seed: int = 1
    """Seed of the data order and of torch's RNG."""
    save_freq: int = -1
    """Save a checkpoint every N steps (-1: only at the end of training)."""
    test_freq: int = -1
    """Compute the validation loss every N steps (-1: only at the end of training)."""
    max_ckpt_to_keep: int | None = None
    """Keep only the newest N ``global_step_*`` checkpoints; None keeps all."""
    resume_mode: str = "auto"
    """``auto`` (resume from the latest checkpoint in ``default_local_dir`` if any), ``disable`` or
    ``resume_path`` (from ``resume_from_path``)."""
    resume_from_path: str | None = None
    """Checkpoint directory (``.../global_step_N``) to resume from with ``resume_mode=resume_path``."""
    save_hf_model: bool = False
    """Also write a transformers directory (config, safetensors, tokenizer) into ``global_step_N/huggingface/`` of
    every checkpoint, e.g. to start RL from it with ``actor_rollout_ref.model.path``."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint contents (``model``, ``optimizer``, ``extra``, ``hf_model``)."""
    nnodes: int = 1
    """Accepted for verl compatibility; the launcher (torchrun) decides the world."""
    n_gpus_per_node: int = 8
    """Accepted for verl compatibility; ``torchrun --nproc_per_node`` decides the ranks."""
    device: str = "auto"
    """``auto`` (the accelerator when present, else CPU), ``cuda`` or ``cpu``."""


@dataclass
class SFTConfig:
    """The whole SFT run (``python -m verl.trainer.fsdp_sft_trainer key=value ...``)."""

    config_names: ClassVar[tuple[str, ...]] = ("sft_trainer",)  # verl's --config-name for this entry point

    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    """The SFT dataset and batch sizes."""
    model: SFTModelConfig = field(default_factory=SFTModelConfig)
    """The model being fine-tuned."""
    optim: SFTOptimConfig = field(default_factory=SFTOptimConfig)
    """Optimizer and schedule."""
    use_remove_padding: bool = True
    """Pack each micro-batch's sequences into one row without padding (same loss as the padded computation)."""
    ulysses_sequence_parallel_size: int = 1
    """Ulysses sequence parallelism: each packed micro-batch is split along the sequence over this many ranks
    (heads and key/value heads must divide by it; needs ``use_remove_padding``); the data-parallel size is
    ``world / ulysses_sequence_parallel_size``."""
    trainer: SFTTrainerSection = field(default_factory=SFTTrainerSection)
    """Run length, logging and checkpoints."""

    def validate(self, world_size: int = 1) -> SFTConfig:
        """Raise :class:`ConfigError` naming the key and the fix for an impossible setting."""
        data, model, trainer = self.data, self.model, self.trainer
        if not model.partial_pretrain:
            raise ConfigError("model.partial_pretrain is empty; set it to a local transformers model directory")
        if not data.train_files:
            raise ConfigError("data.train_files is empty; set it to a parquet file (or a list of them)")
        if model.strategy not in ("fsdp", "fsdp2"):
            raise ConfigError(f"model.strategy={model.strategy!r}: only fsdp2 (or fsdp, the same) is supported")
        sp = self.ulysses_sequence_parallel_size
        if sp < 1 or world_size % sp:
            raise ConfigError(f"ulysses_sequence_parallel_size={sp} must divide the {world_size} ranks")
        if sp > 1 and not self.use_remove_padding:
            raise ConfigError(f"ulysses_sequence_parallel_size={sp} splits packed sequences: set use_remove_padding=true")
        dp = world_size // max(sp, 1)  # the ranks of a sequence-parallel group share one slice of the batch
        try:
            LoraSpec.from_model_config(model, "model")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if trainer.default_hdfs_dir is not None:
            raise ConfigError("trainer.default_hdfs_dir: HDFS is not available; checkpoints stay in "
                              "trainer.default_local_dir (remove the override)")
        if model.use_liger:
            raise ConfigError("model.use_liger=true: Liger kernels are not integrated here (the SFT loss computes logits "
                              "only at the target positions); remove the override")
        fsdp = model.fsdp_config
        if fsdp.param_offload or fsdp.optimizer_offload or fsdp.cpu_offload or fsdp.offload_params:
            raise ConfigError("model.fsdp_config.param_offload / optimizer_offload / cpu_offload / offload_params are "
                              "not supported by the SFT trainer; remove them (use gradient checkpointing or LoRA)")
        if data.train_batch_size % dp:
            raise ConfigError(f"data.train_batch_size={data.train_batch_size} cannot be split over {dp} ranks "
                              f"(data-parallel: world / ulysses_sequence_parallel_size); make it a multiple of {dp}")
        if self.optim.lr_scheduler not in ("cosine", "constant"):
            raise ConfigError(f"optim.lr_scheduler={self.optim.lr_scheduler!r}: use cosine or constant")
        if trainer.resume_mode not in ("auto", "disable", "resume_path"):
            raise ConfigError(f"trainer.resume_mode={trainer.resume_mode!r}: use auto, disable or resume_path")
        if trainer.resume_mode == "resume_path" and not trainer.resume_from_path:
            raise ConfigError("trainer.resume_mode=resume_path needs trainer.resume_from_path=<.../global_step_N>")
        if trainer.device not in ("auto", "cuda", "cpu"):  # device-ok: a config value
            raise ConfigError(f"trainer.device={trainer.device!r}: use auto, cuda or cpu")
        if trainer.total_training_steps is not None and trainer.total_training_steps < 1:
            raise ConfigError(f"trainer.total_training_steps={trainer.total_training_steps} must be >= 1 (or null)")
        if trainer.max_ckpt_to_keep is not None and trainer.max_ckpt_to_keep < 1:
            raise ConfigError(f"trainer.max_ckpt_to_keep={trainer.max_ckpt_to_keep} must be >= 1 (or null)")
        data.validate()
        return self
