"""core_algos is pure math: importing it pulls in neither Ray nor transformers, and exports the issue's names."""

import subprocess
import sys

import verl.trainer.ppo.core_algos as core_algos

ISSUE_NAMES = [
    "compute_gae_advantage_return", "compute_grpo_outcome_advantage", "compute_remax_outcome_advantage",
    "get_adv_estimator_fn", "register_adv_est", "get_policy_loss_fn", "register_policy_loss",
    "compute_policy_loss", "compute_value_loss", "kl_penalty", "agg_loss", "entropy_from_logits",
    "compute_entropy_loss", "FixedKLController", "AdaptiveKLController", "apply_kl_penalty",
    "compute_overlong_penalty", "compute_tis_weights",
]  # fmt: skip


def test_issue_names_are_exported():
    missing = [n for n in ISSUE_NAMES if not hasattr(core_algos, n)]
    assert not missing
    assert all(hasattr(core_algos, n) for n in core_algos.__all__)


def test_import_is_light():
    code = (
        "import sys, verl.trainer.ppo.core_algos\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('ray', 'transformers', 'pandas')]\n"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
