"""The PPO trainer's config tree (``python -m verl.trainer.main_ppo key=value ...``).

The worker and data sections are their own modules' dataclasses; this module adds ``algorithm``,
``trainer`` and ``ray_init`` and composes the whole tree. Defaults live here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from verl.data.config import DataConfig
from verl.reward.config import CustomRewardFunctionConfig
from verl.utils.profiler.config import GlobalProfilerConfig
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
class RolloutCorrectionConfig:
    """Correction of the mismatch between the rollout engine's policy and the trainer's (verl's
    ``algorithm.rollout_correction``; needs ``actor_rollout_ref.rollout.calculate_log_probs=true`` when any of
    it is on). See ``docs/algo/rollout_corr.md``."""

    rollout_is: str | None = None
    """Importance weights pi_old / pi_rollout (bypass mode: pi_theta / pi_rollout) multiplied into the policy
    loss: ``token`` (one per token), ``sequence`` (the product over the response, one per sequence); None = off.
    In bypass mode with ``loss_type=ppo_clip`` they are not applied (the PPO ratio already is pi_theta /
    pi_rollout), as in verl."""
    rollout_is_threshold: float = 2.0
    """Upper truncation of the importance weights (truncated IS)."""
    rollout_rs: str | None = None
    """Rejection sampling: comma-separated modes ``token_k1|k2|k3``, ``seq_sum_k1|k2|k3``,
    ``seq_mean_k1|k2|k3``, ``seq_max_k2|k3``; rejected tokens/sequences leave the response mask; None = off."""
    rollout_rs_threshold: str | float | None = None
    """One threshold per ``rollout_rs`` mode (comma-separated; one is broadcast): ``k1`` modes take
    ``"lower_upper"`` ratio bounds (a single number u means ``1/u_u``), ``k2``/``k3`` an upper bound."""
    bypass_mode: bool = False
    """Use the rollout's log-probs as the old log-probs (no recomputation): two policies instead of three."""
    loss_type: str = "ppo_clip"
    """Bypass mode's loss: ``ppo_clip`` (PPO's clipped ratio pi_theta / pi_rollout) or ``reinforce`` (policy
    gradient with the importance weights, no clipping)."""
    rollout_is_batch_normalize: bool = False
    """Scale the importance weights to mean 1 over the batch (token weights over tokens, sequence weights over
    sequences), after truncation."""


@dataclass
class PFPPOConfig:
    """Policy filtration PPO: resample the batch by reward (``algorithm.use_pf_ppo``)."""

    reweight_method: str = "pow"
    """``pow`` (weight = |reward|^weight_pow), ``max_min`` (keep only the best and worst) or ``max_random``."""
    weight_pow: float = 2.0
    """Exponent of the ``pow`` method."""


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
    rollout_correction: RolloutCorrectionConfig = field(default_factory=RolloutCorrectionConfig)
    """Importance weighting / rejection of rollout-vs-trainer mismatch."""
    use_pf_ppo: bool = False
    """Policy filtration PPO (not available)."""
    pf_ppo: PFPPOConfig = field(default_factory=PFPPOConfig)
    """Its settings (read only with ``use_pf_ppo``)."""


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
    max_failed_reward_steps: int = 2
    """Stop with an error (showing one failing sample and its exception) after this many consecutive training
    steps in which every reward was unusable: the score function raised, ran past its time limit or returned no
    finite number. 0 = never stop (each step's counts are logged as ``reward/num_errors`` etc. regardless)."""
    worker_call_timeout_s: float | None = 3600.0
    """Watchdog on every call to a worker (generate, update, checkpoint, ...): a call that has not returned after
    this many seconds is reported naming the worker, its rank and the method, with the stacks of the stuck
    workers' threads, and the run exits instead of hanging. 0 or null = no watchdog."""
    use_legacy_worker_impl: str = "auto"
    """verl's choice between its two worker implementations (``auto``, ``enable``, ``disable``). This library has
    one, which follows verl's documented behaviour; every value runs it."""
    default_hdfs_dir: str | None = None
    """Copy checkpoints to HDFS (not available: null)."""
    del_local_ckpt_after_load: bool = False
    """Delete the local checkpoint a run resumed from once it is loaded."""
    esi_redundant_time: int = 0
    """Seconds before a cloud instance's expiry to save a checkpoint (ESI; not available: 0)."""
    ray_wait_register_center_timeout: int = 300
    """Seconds to wait for the Ray worker group to start (verl's register center); the workers' start here
    waits on their actors' creation, bounded by this."""


@dataclass
class RayInitConfig:
    """How the trainer starts or joins Ray."""

    address: str | None = None
    """An existing cluster (``auto`` or ``host:port``, as ``ray start`` printed); None = start a local one
    (``RAY_ADDRESS`` in the environment also joins an existing cluster)."""
    num_cpus: int | None = None
    """CPUs of a local cluster; None = enough for the configured worker processes."""


@dataclass
class RewardManagerModuleConfig:
    """A custom reward-manager class in a file (``reward_manager.source=importlib``)."""

    path: str | None = None
    """Python file (or ``pkg://module``) defining the class."""
    name: str = "custom_reward_manager"
    """Class name in that file."""


@dataclass
class RewardManagerSection:
    """verl's newer spelling of the reward-manager choice (``reward_manager.*``)."""

    source: str = "register"
    """``register``: a registered manager named ``name``; ``importlib``: the class ``module.name`` in ``module.path``."""
    name: str = "naive"
    """Registered manager name; ``reward_model.reward_manager`` (the older spelling, which the loader reads)
    follows it unless set."""
    module: RewardManagerModuleConfig = field(default_factory=RewardManagerModuleConfig)
    """The class to import with ``source=importlib``."""


@dataclass
class TransferQueueConfig:
    """verl's TransferQueue data plane."""

    enable: bool = False
    """Move batches through TransferQueue (not available: batches travel with the calls)."""


@dataclass
class RayKwargsConfig:
    """``ray_kwargs``: how Ray is started (verl's spelling; ``ray_init.*`` is the older one)."""

    ray_init: RayInitConfig = field(default_factory=RayInitConfig)
    """Arguments of ``ray.init`` (follow ``ray_init.*``)."""
    timeline_json_file: str | None = None
    """Write Ray's task timeline (``ray.timeline``) to this JSON file at the end of the run (Ray mode)."""


@dataclass
class PPOConfig:
    """The whole configuration of ``main_ppo``."""

    config_names: ClassVar[tuple[str, ...]] = ("ppo_trainer",)
    #: verl's derived defaults: a key the user does not set follows its source, as verl's ``${...}`` do.
    derived_defaults: ClassVar[dict[str, str]] = {
        "actor_rollout_ref.actor.rollout_n": "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.actor.use_fused_kernels": "actor_rollout_ref.model.use_fused_kernels",
        "actor_rollout_ref.actor.use_remove_padding": "actor_rollout_ref.model.use_remove_padding",
        "actor_rollout_ref.actor.grad_clip": "actor_rollout_ref.actor.optim.clip_grad",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile": "actor_rollout_ref.actor.use_torch_compile",
        "actor_rollout_ref.actor.fsdp_config.entropy_from_logits_with_chunking":
            "actor_rollout_ref.actor.entropy_from_logits_with_chunking",
        "actor_rollout_ref.actor.fsdp_config.entropy_checkpointing": "actor_rollout_ref.actor.entropy_checkpointing",
        "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size":
            "actor_rollout_ref.actor.ulysses_sequence_parallel_size",
        "actor_rollout_ref.ref.rollout_n": "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.ref.strategy": "actor_rollout_ref.actor.strategy",
        "actor_rollout_ref.ref.use_torch_compile": "actor_rollout_ref.actor.use_torch_compile",
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": "actor_rollout_ref.actor.use_dynamic_bsz",
        "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
        "actor_rollout_ref.ref.ulysses_sequence_parallel_size": "actor_rollout_ref.actor.ulysses_sequence_parallel_size",
        "actor_rollout_ref.ref.fsdp_config.use_torch_compile": "actor_rollout_ref.ref.use_torch_compile",
        "actor_rollout_ref.ref.megatron.tensor_model_parallel_size":
            "actor_rollout_ref.actor.megatron.tensor_model_parallel_size",
        "actor_rollout_ref.ref.fsdp_config.ulysses_sequence_parallel_size":
            "actor_rollout_ref.ref.ulysses_sequence_parallel_size",
        "actor_rollout_ref.rollout.prompt_length": "data.max_prompt_length",
        "actor_rollout_ref.rollout.response_length": "data.max_response_length",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz": "actor_rollout_ref.actor.use_dynamic_bsz",
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
        "actor_rollout_ref.rollout.profiler.enable": "actor_rollout_ref.actor.profiler.enable",
        "actor_rollout_ref.rollout.profiler.all_ranks": "actor_rollout_ref.actor.profiler.all_ranks",
        "actor_rollout_ref.rollout.profiler.ranks": "actor_rollout_ref.actor.profiler.ranks",
        "actor_rollout_ref.rollout.mtp": "actor_rollout_ref.model.mtp",
        "actor_rollout_ref.rollout.prometheus.served_model_name": "actor_rollout_ref.model.path",
        "critic.rollout_n": "actor_rollout_ref.rollout.n",
        "critic.ppo_mini_batch_size": "actor_rollout_ref.actor.ppo_mini_batch_size",
        "critic.use_dynamic_bsz": "actor_rollout_ref.actor.use_dynamic_bsz",
        "critic.ppo_epochs": "actor_rollout_ref.actor.ppo_epochs",
        "critic.shuffle": "actor_rollout_ref.actor.shuffle",
        "critic.loss_agg_mode": "actor_rollout_ref.actor.loss_agg_mode",
        "critic.forward_max_token_len_per_gpu": "critic.ppo_max_token_len_per_gpu",
        "critic.grad_clip": "critic.optim.clip_grad",
        "critic.model.external_lib": "actor_rollout_ref.model.external_lib",
        "critic.model.trust_remote_code": "actor_rollout_ref.model.trust_remote_code",
        "reward_model.use_dynamic_bsz": "critic.use_dynamic_bsz",
        "reward_model.forward_max_token_len_per_gpu": "critic.forward_max_token_len_per_gpu",
        "reward_model.model.external_lib": "actor_rollout_ref.model.external_lib",
        "reward_model.model.use_fused_kernels": "actor_rollout_ref.model.use_fused_kernels",
        "reward_model.reward_manager": "reward_manager.name",
        "actor_rollout_ref.rollout.profiler.tool_config": "actor_rollout_ref.actor.profiler.tool_config",
        "reward_model.profiler.tool_config": "actor_rollout_ref.actor.profiler.tool_config",
        "ray_kwargs.ray_init.num_cpus": "ray_init.num_cpus",
        "ray_kwargs.ray_init.address": "ray_init.address",
    }

    data: DataConfig = field(default_factory=DataConfig)
    """Datasets and lengths."""
    actor_rollout_ref: ActorRolloutRefConfig = field(default_factory=ActorRolloutRefConfig)
    """Policy, rollout and reference."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """Value model (PPO with GAE)."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """Reward model and reward manager."""
    reward_manager: RewardManagerSection = field(default_factory=RewardManagerSection)
    """Which reward manager scores (verl's newer spelling of ``reward_model.reward_manager``)."""
    custom_reward_function: CustomRewardFunctionConfig = field(default_factory=CustomRewardFunctionConfig)
    """A user's score function."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """Advantages and KL."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Run settings."""
    ray_init: RayInitConfig = field(default_factory=RayInitConfig)
    """Ray cluster (older spelling of ``ray_kwargs.ray_init``)."""
    ray_kwargs: RayKwargsConfig = field(default_factory=RayKwargsConfig)
    """Ray start-up arguments and timeline."""
    global_profiler: GlobalProfilerConfig = field(default_factory=GlobalProfilerConfig)
    """Profiling: tool, steps, output folder (each role's ``profiler.enable`` picks the roles)."""
    transfer_queue: TransferQueueConfig = field(default_factory=TransferQueueConfig)
    """verl's TransferQueue (not available)."""
