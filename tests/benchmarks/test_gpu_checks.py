"""``benchmarks/run_gpu_checks.sh --dry-run``: the GPU check's parts on tiny sizes on CPU, with the same code.

The tiny benchmark variants have their own tests (tests/benchmarks, tests/rollout); here the script itself runs
its GPU-test and end-to-end parts through bash, and the part runner's time limit and wheel install are checked.
Limits are generous and nothing asserts a duration, so a loaded machine only makes it slower.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks import gpu_checks  # noqa: E402


def test_dry_run_uses_the_full_runs_commands_on_tiny_sizes(tmp_path):
    full = {p.name: p.argv for p in gpu_checks.build_parts(False, tmp_path, gpu_checks.LIMITS)}
    dry = {p.name: p.argv for p in gpu_checks.build_parts(True, tmp_path, gpu_checks.DRY_LIMITS)}
    assert list(full) == ["gpu_tests", "rollout", "train", "grpo_step", "e2e_local"]
    for name in full:
        extra = [a for a in dry[name] if a not in full[name]]
        assert extra in ([], ["--tiny"], ["--dry-run"]), (name, extra)
    assert sum(gpu_checks.LIMITS.values()) <= 7 * 60, "the whole check fits in ~7 minutes"


def test_dry_run_through_bash_writes_one_summary(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "benchmarks/run_gpu_checks.sh", "--dry-run", "--only", "gpu_tests,e2e_local",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env={**__import__("os").environ, "PYTHON": sys.executable})
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 0, json.dumps(summary["parts"], indent=1)[-4000:] + proc.stderr[-2000:]
    assert summary["dry_run"] and summary["all_ok"] and set(summary["parts"]) == {"gpu_tests", "e2e_local"}
    tests = summary["parts"]["gpu_tests"]
    assert tests["counts"].get("skipped", 0) >= 5 and not tests["failed_tests"], "GPU tests collected, skipped on CPU"
    (e2e,) = summary["parts"]["e2e_local"]["records"]
    assert e2e["steps"] == [1, 2] and e2e["execution_mode"] == "local" and Path(e2e["checkpoint"]).is_dir()
    assert 0 < e2e["seconds_to_first_step"] <= e2e["seconds_total"]
    goals = summary["goals"]
    assert goals["e2e_local_seconds_to_first_step"]["value"] == e2e["seconds_to_first_step"]
    assert all(g["met"] is None for g in goals.values()), "tiny CPU figures are not judged against GPU goals"


def test_a_part_past_its_limit_is_killed_and_reported(tmp_path):
    part = gpu_checks.Part("sleeper", [sys.executable, "-c", "import time; print('{\"a\": 1}', flush=True); "
                                       "time.sleep(600)"], limit_s=2)
    result = gpu_checks.run_part(part, {}, tmp_path)
    assert result["status"] == "timeout" and result["returncode"] is None
    assert result["seconds"] < 60 and result["records"] == [{"a": 1}], "what it printed before the limit is kept"


def test_wheels_become_importable_without_touching_the_interpreter(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "gpucheckprobe-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("gpucheckprobe/__init__.py", "VALUE = 42\n")
        info = "gpucheckprobe-1.0.dist-info/"
        zf.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: gpucheckprobe\nVersion: 1.0\n")
        zf.writestr(info + "WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(info + "RECORD", "")
    target = tmp_path / "site"
    assert gpu_checks.install_wheels(wheels, target) == ["gpucheckprobe-1.0-py3-none-any.whl"]
    proc = subprocess.run([sys.executable, "-c", "import gpucheckprobe; print(gpucheckprobe.VALUE)"],
                          env={"PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert proc.stdout.strip() == "42", proc.stderr
    assert subprocess.run([sys.executable, "-c", "import gpucheckprobe"], capture_output=True).returncode != 0
