"""A reduced quickstart (fewer SFT and GRPO steps): the whole path runs and GRPO's reward goes up."""

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_quickstart():
    spec = importlib.util.spec_from_file_location("run_quickstart", ROOT / "examples" / "quickstart" / "run_quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reduced_quickstart_learns(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    summary = load_quickstart().main([
        "--out_dir", str(tmp_path / "qs"), "--sft_steps", "200", "--grpo_steps", "24", "--test_freq", "24",
        "--n_train", "2000", "--n_test", "100",
    ])
    assert summary["train_reward_last_5_steps"] > summary["train_reward_first_5_steps"] + 0.03, summary
    assert 0.0 < summary["heldout_accuracy_after_sft"] < 1.0
    assert os.path.getsize(summary["plot"]) > 10_000
    assert os.path.isdir(summary["grpo_checkpoint"])
    assert summary["execution_mode"] == "local"
    assert 0 < summary["seconds_to_first_grpo_step"] < summary["seconds_per_phase"]["GRPO"]
