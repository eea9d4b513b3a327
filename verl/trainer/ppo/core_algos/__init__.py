"""The math of PPO-family RL for LLMs, as pure tensor functions.

Inputs are ``[batch, response_len]`` tensors with a ``response_mask``; groups of samples of one prompt are
given by ``index`` (their uids). No config objects, no Ray, no collectives, and no host syncs on the
training hot path (policy/value/entropy losses, aggregation): data-parallel denominators are arguments.

Modules, by concern: :mod:`advantage` (registry, GAE, REINFORCE++, ReMax), :mod:`group_advantage`
(GRPO, pass@k, RLOO, REINFORCE++-baseline, OPO, GPG), :mod:`loss_contract` (the policy-loss registry, callable in verl's
convention and the keyword one), :mod:`policy_loss` and :mod:`policy_loss_cov` (the losses), :mod:`value_loss`, :mod:`kl`, :mod:`aggregation`, :mod:`entropy`,
:mod:`reward_shaping`, :mod:`importance`, :mod:`masked`. Importing this package registers every built-in.
"""

from verl.trainer.ppo.core_algos.advantage import (
    ADV_ESTIMATOR_REGISTRY,
    AdvantageEstimator,
    call_adv_estimator,
    compute_gae_advantage_return,
    config_value,
    compute_reinforce_plus_plus_outcome_advantage,
    compute_remax_outcome_advantage,
    get_adv_estimator_fn,
    register_adv_est,
)
from verl.trainer.ppo.core_algos.aggregation import LOSS_AGG_MODES, agg_loss, agg_loss_counts
from verl.trainer.ppo.core_algos.entropy import compute_entropy_loss, entropy_from_logits
from verl.trainer.ppo.core_algos.group_advantage import (
    compute_gpg_outcome_advantage,
    compute_grpo_outcome_advantage,
    compute_grpo_passk_outcome_advantage,
    compute_opo_outcome_advantage,
    compute_reinforce_plus_plus_baseline_outcome_advantage,
    compute_rloo_outcome_advantage,
    group_ids_from_index,
)
from verl.trainer.ppo.core_algos.importance import compute_tis_weights
from verl.trainer.ppo.core_algos.loss_contract import ActorLossConfig, PolicyLoss, PolicyLossOptions
from verl.trainer.ppo.core_algos.kl import (
    KL_PENALTY_TYPES,
    AdaptiveKLController,
    FixedKLController,
    apply_kl_penalty,
    compute_kl_penalized_rewards,
    get_kl_controller,
    kl_penalty,
    kl_penalty_forward,
)
from verl.trainer.ppo.core_algos.masked import masked_mean, masked_sum, masked_var, masked_whiten
from verl.trainer.ppo.core_algos.policy_loss import (
    POLICY_LOSS_PARAMS,
    POLICY_LOSS_REGISTRY,
    compute_policy_loss,
    compute_policy_loss_cispo,
    compute_policy_loss_geo_mean,
    compute_policy_loss_gpg,
    compute_policy_loss_gspo,
    compute_policy_loss_vanilla,
    get_policy_loss_fn,
    register_policy_loss,
)
from verl.trainer.ppo.core_algos.policy_loss_cov import compute_policy_loss_clip_cov, compute_policy_loss_kl_cov
from verl.trainer.ppo.core_algos.reward_shaping import apply_overlong_penalty, compute_overlong_penalty
from verl.trainer.ppo.core_algos.value_loss import compute_value_loss

__all__ = [
    "ADV_ESTIMATOR_REGISTRY",
    "KL_PENALTY_TYPES",
    "LOSS_AGG_MODES",
    "POLICY_LOSS_PARAMS",
    "POLICY_LOSS_REGISTRY",
    "ActorLossConfig",
    "AdaptiveKLController",
    "AdvantageEstimator",
    "FixedKLController",
    "PolicyLoss",
    "PolicyLossOptions",
    "agg_loss",
    "agg_loss_counts",
    "apply_kl_penalty",
    "apply_overlong_penalty",
    "call_adv_estimator",
    "compute_entropy_loss",
    "config_value",
    "compute_gae_advantage_return",
    "compute_gpg_outcome_advantage",
    "compute_grpo_outcome_advantage",
    "compute_grpo_passk_outcome_advantage",
    "compute_kl_penalized_rewards",
    "compute_opo_outcome_advantage",
    "compute_overlong_penalty",
    "compute_policy_loss",
    "compute_policy_loss_cispo",
    "compute_policy_loss_clip_cov",
    "compute_policy_loss_geo_mean",
    "compute_policy_loss_gpg",
    "compute_policy_loss_gspo",
    "compute_policy_loss_kl_cov",
    "compute_policy_loss_vanilla",
    "compute_reinforce_plus_plus_baseline_outcome_advantage",
    "compute_reinforce_plus_plus_outcome_advantage",
    "compute_remax_outcome_advantage",
    "compute_rloo_outcome_advantage",
    "compute_tis_weights",
    "compute_value_loss",
    "entropy_from_logits",
    "get_adv_estimator_fn",
    "get_kl_controller",
    "get_policy_loss_fn",
    "group_ids_from_index",
    "kl_penalty",
    "kl_penalty_forward",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "register_adv_est",
    "register_policy_loss",
]
