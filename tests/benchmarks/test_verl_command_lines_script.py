"""``benchmarks/verl_command_lines.py`` on a two-script stand-in for verl's ``examples/``: it records what each
script passes to ``main_ppo`` (shell variables expanded), counts accepted lines, and names a refused line's key."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GOOD = """model=$HOME/models/m
python3 -m verl.trainer.main_ppo actor_rollout_ref.model.path=$model \\
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 critic.ppo_micro_batch_size_per_gpu=2 \\
    actor_rollout_ref.rollout.tensor_model_parallel_size=2 $@
"""
BAD = """python3 -m verl.trainer.main_ppo actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 \\
    critic.ppo_micro_batch_size_per_gpu=2 algorithm.use_pf_ppo=true
"""


def test_lines_are_recorded_measured_and_their_blockers_named(tmp_path):
    (tmp_path / "examples" / "a").mkdir(parents=True)
    (tmp_path / "examples" / "a" / "good.sh").write_text(GOOD)
    (tmp_path / "examples" / "a" / "bad.sh").write_text(BAD)
    out = tmp_path / "lines.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "verl_command_lines.py"), "--verl", str(tmp_path),
                           "--json", str(out)], capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 main_ppo command lines in 2 scripts" in proc.stdout
    assert "accepted without their tensor-parallel sizes: 1" in proc.stdout  # unchanged: 0, or 1 once TP runs
    results = {r["script"]: r for r in json.loads(out.read_text())}
    good = results["examples/a/good.sh"]
    assert good["argv"][0] == "actor_rollout_ref.model.path=$HOME/models/m" and good["accepted_without_tp"]
    assert results["examples/a/bad.sh"]["blockers"] == ["algorithm.use_pf_ppo"]
