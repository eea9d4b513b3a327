"""The PPO trainer's config tree (``python -m verl.trainer.main_ppo key=value ...``).

The worker and data sections are their own modules' dataclasses; this module adds ``algorithm``,
``trainer`` and ``ray_init`` and composes the whole tree. Defaults live here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verl.data.config import DataConfig
from verl.reward.config import CustomRewardFunctionConfig
from verl.workers.config import ActorRolloutRefConfig, CriticConfig, RewardModelConfig

__all__ = ["AlgorithmConfig", "FilterGroupsConfig", "KLControlConfig", "PPOConfig", "RayInitConfig", "TrainerConfig"]


@dataclass
class KLControlConfig:
    """The coefficient of the KL penalty in the reward (``algorithm.use_kl_in_reward``)."""

    type: str = "fixed"
    """``fixed`` or ``adaptive`` (Ziegler et al. 2019)."""
    kl_coef: float = 0.001
    """Initial / fixed coefficient beta."""
    horizon: int = 10000
    """Adaptive controller horizon."""
    target_kl: float = 0.1
    """Adaptive controller target KL."""


@dataclass
class FilterGroupsConfig:
    """DAPO dynamic sampling: drop prompt groups whose responses all got the same reward."""

    enable: bool = False
    """Turn dynamic sampling on."""
    metric: str = "seq_final_reward"
    """Per-sequence quantity whose variance decides: ``seq_final_reward``, ``seq_reward``, ``score`` or ``acc``
    (a reward-extra-info column)."""
    max_num_gen_batches: int = 0
    """Most generation batches per training step while filling the batch; 0 = no limit."""


@dataclass
class AlgorithmConfig:
    """Advantage estimation and the KL-in-reward penalty."""

    gamma: float = 1.0
    """Discount factor."""
    lam: float = 1.0
    """GAE lambda."""
    adv_estimator: str = "gae"
    """``gae`` (PPO with a critic), ``grpo``, ``grpo_passk``, ``rloo``, ``reinforce_plus_plus``,
    ``reinforce_plus_plus_baseline``, ``remax``, ``opo``, ``gpg``, or a registered plug-in."""
    norm_adv_by_std_in_grpo: bool = True
    """Divide GRPO advantages by the group's std (False = Dr. GRPO)."""
    use_kl_in_reward: bool = False
    """Subtract beta x KL(actor || ref) from the token rewards."""
    kl_penalty: str = "kl"
    """KL estimator of the in-reward penalty: ``kl``, ``abs``, ``mse``, ``low_var_kl``, ``full``-free variants."""
    kl_ctrl: KLControlConfig = field(default_factory=KLControlConfig)
    """KL coefficient control."""
    filter_groups: FilterGroupsConfig = field(default_factory=FilterGroupsConfig)
    """DAPO dynamic sampling."""


@dataclass
class TrainerConfig:
    """The run: length, placement, logging, validation and checkpoints."""

    total_epochs: int = 30
    """Passes over the training data."""
    total_training_steps: int | None = None
    """Stop after this many steps (None = ``total_epochs`` x batches per epoch)."""
    project_name: str = "verl_examples"
    """Project name for loggers and the default checkpoint directory."""
    experiment_name: str = "gsm8k"
    """Experiment name for loggers and the default checkpoint directory."""
    logger: list[str] = field(default_factory=lambda: ["console"])
    """Loggers: ``console``, ``file`` (JSONL in ``default_local_dir``), ``tensorboard``, ``wandb``, ``mlflow``, ``swanlab``."""
    log_val_generations: int = 0
    """Validation samples (input, output, score) to print per validation."""
    nnodes: int = 1
    """Nodes of the Ray cluster to use."""
    n_gpus_per_node: int = 8
    """Accelerators per node; with ``device=cpu``, worker processes per node."""
    device: str = "auto"
    """``cuda``, ``cpu`` or ``auto`` (cuda when an accelerator is present)."""
    execution_mode: str = "auto"
    """``local``: every role in the trainer's own process, Ray not imported (one worker process: ``nnodes=1``,
    ``n_gpus_per_node=1``); ``ray``: worker processes on Ray; ``auto``: local for one worker process unless a
    Ray cluster is named (``ray_init.address`` or ``RAY_ADDRESS``), else ray."""
    placement: str = "colocate"
    """``colocate``: every role shares all processes (hybrid engine); ``split``: actor/rollout/ref on the
    first half of each node's processes, critic and reward model on the second half."""
    save_freq: int = -1
    """Save a checkpoint every this many steps (and at the end); -1 = never."""
    test_freq: int = -1
    """Validate every this many steps (and at the end); -1 = never."""
    val_before_train: bool = True
    """Validate once before the first step."""
    val_only: bool = False
    """Validate and exit."""
    critic_warmup: int = 0
    """Steps that update only the critic before the actor starts learning."""
    balance_batch: bool = True
    """Reorder each batch so data-parallel ranks get equal token loads."""
    resume_mode: str = "auto"
    """``auto`` (latest checkpoint in ``default_local_dir`` if any), ``disable``, or ``resume_path``."""
    resume_from_path: str | None = None
    """The ``global_step_N`` directory to resume from with ``resume_mode=resume_path``."""
    default_local_dir: str | None = None
    """Checkpoint and log directory; None = ``checkpoints/<project_name>/<experiment_name>``."""
    max_actor_ckpt_to_keep: int | None = None
    """Keep only the newest this many checkpoints (None = all)."""
    max_critic_ckpt_to_keep: int | None = None
    """Accepted for compatibility; checkpoints are kept or deleted as a whole by ``max_actor_ckpt_to_keep``."""
    rollout_data_dir: str | None = None
    """Write every step's prompts, responses and scores as ``<step>.jsonl`` here."""
    validation_data_dir: str | None = None
    """Write validation generations as ``val_<step>.jsonl`` here."""
    seed: int = 1
    """Seed of the driver (uids, shuffling of mini-batches)."""


@dataclass
class RayInitConfig:
    """How the trainer starts or joins Ray."""

    address: str | None = None
    """An existing cluster (``auto`` or ``host:port``, as ``ray start`` printed); None = start a local one
    (``RAY_ADDRESS`` in the environment also joins an existing cluster)."""
    num_cpus: int | None = None
    """CPUs of a local cluster; None = enough for the configured worker processes."""


@dataclass
class PPOConfig:
    """The whole configuration of ``main_ppo``."""

    data: DataConfig = field(default_factory=DataConfig)
    """Datasets and lengths."""
    actor_rollout_ref: ActorRolloutRefConfig = field(default_factory=ActorRolloutRefConfig)
    """Policy, rollout and reference."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """Value model (PPO with GAE)."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """Reward model and reward manager."""
    custom_reward_function: CustomRewardFunctionConfig = field(default_factory=CustomRewardFunctionConfig)
    """A user's score function."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """Advantages and KL."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Run settings."""
    ray_init: RayInitConfig = field(default_factory=RayInitConfig)
    """Ray cluster."""
