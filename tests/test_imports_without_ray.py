"""The trainer, workers and data path import without Ray, and the GPU test files collect on a machine that
has none of Ray, omegaconf, datasets, tensordict or vLLM (as the GPU machine we test on)."""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "helpers"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from import_blocker import attempts, env_without  # noqa: E402

from benchmarks.gpu_checks import gpu_test_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU_MACHINE = ["ray", "omegaconf", "datasets", "tensordict", "vllm"]
LOCAL_MODE_MODULES = [
    "verl.trainer.main_ppo", "verl.trainer.ppo.ray_trainer", "verl.trainer.config", "verl.workers.fsdp_workers",
    "verl.workers.critic", "verl.workers.reward_model", "verl.data.rl_dataset", "verl.reward.loader",
    "verl.single_controller.local", "verl.single_controller.base", "verl.rollout",
]


def test_local_mode_modules_import_without_ray(tmp_path):
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code, *LOCAL_MODE_MODULES], env=env_without(["ray"], tmp_path),
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "False"
    assert attempts(tmp_path) == [], "no module even tried to import Ray"


def test_config_loads_without_omegaconf(tmp_path):
    """Keys and verl's whole-value ``${a.b}`` references resolve without omegaconf (the GPU machine has none); an
    interpolation inside a string says it needs omegaconf."""
    code = ("from verl.trainer.config import load_config\n"
            "c = load_config(['trainer.n_gpus_per_node=1', 'data.max_response_length=7', 'trainer.project_name=p1',\n"
            "                 'trainer.experiment_name=${trainer.project_name}'])\n"
            "print(c.data.max_response_length, c.trainer.experiment_name)\n"
            "import sys; print('omegaconf' in sys.modules)\n"
            "try:\n    load_config(['trainer.experiment_name=${trainer.project_name}-x'])\n"
            "except Exception as e:\n    print(type(e).__name__, 'needs omegaconf' in str(e))")
    proc = subprocess.run([sys.executable, "-c", code], env=env_without(["omegaconf"], tmp_path), capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["7", "p1", "False", "ConfigError", "True"]


def test_gpu_test_files_collect_without_ray_omegaconf_datasets(tmp_path):
    files = gpu_test_files()
    assert {"tests/rollout/test_gpu.py", "tests/trainer/ppo/test_core_algos_gpu.py"} <= set(files)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu",
                           "-p", "no:cacheprovider", *files, "tests/trainer/test_checkpoint_atomic.py"],
                          env=env_without(ABSENT_ON_GPU_MACHINE, tmp_path), capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "error" not in proc.stdout.lower().split("\n")[-2], proc.stdout[-2000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert any("test_gpu.py::" in line for line in collected) and any("test_core_algos_gpu.py::" in line
                                                                        for line in collected)
