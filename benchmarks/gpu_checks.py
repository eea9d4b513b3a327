"""The GPU check (``bash benchmarks/run_gpu_checks.sh``): every GPU-side check in one run of at most ~7 minutes.

Parts, each a subprocess with its own time limit (a hang costs that part's limit, not the run):

    gpu_tests   pytest -m gpu over the test files that hold GPU tests
    rollout     benchmarks/rollout.py, native vs hf (64 prompts x n=8, 128 + 256 tokens)
    train       benchmarks/train.py, the verl actor update vs a plain transformers loop (512 x 384 tokens)
    grpo_step   benchmarks/grpo_step.py, one whole GRPO step through main_ppo (local mode)
    e2e_local   a short GRPO run through ``python -m verl.trainer.main_ppo`` in local mode: metrics, a
                checkpoint, and the time from the command to its first finished step

One JSON summary (``<out>/summary.json``) holds each part's status, seconds, parsed results and log tail, and the
goals of docs/performance.md checked against the figures. ``--dry-run`` runs every part with the same code on
tiny sizes on CPU (``--tiny`` benchmarks, a tiny e2e run), so the script is tested where there is no GPU.
Runs with what that machine has (torch, transformers, pyarrow, pandas, pytest): no Ray, omegaconf or datasets.

    python benchmarks/gpu_checks.py [--dry-run] [--out DIR] [--wheels DIR] [--limit part=seconds ...]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Seconds per part on the GPU machine; they add up to 6.9 minutes (the machine's start is not counted). The
# benchmarks and the e2e run include their torch.compile / CUDA-graph warm-up.
LIMITS = {"gpu_tests": 70, "rollout": 100, "train": 55, "grpo_step": 100, "e2e_local": 90}
DRY_LIMITS = {"gpu_tests": 300, "rollout": 300, "train": 300, "grpo_step": 400, "e2e_local": 400}


@dataclass
class Part:
    name: str
    argv: list[str]
    limit_s: float
    parse: str = "json_lines"  # or "pytest", "e2e"
    result: dict[str, Any] = field(default_factory=dict)


def gpu_test_files(root: Path = ROOT) -> list[str]:
    """Test files holding GPU-marked tests (only these are collected, so other files' imports do not matter)."""
    found = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        text = path.read_text()
        if "pytest.mark.gpu" in text:
            found.append(str(path.relative_to(root)))
    return found


def build_parts(dry_run: bool, out: Path, limits: dict[str, float]) -> list[Part]:
    py = sys.executable
    tiny = ["--tiny"] if dry_run else []
    e2e = [py, str(ROOT / "benchmarks" / "gpu_checks.py"), "--e2e-only", "--out", str(out / "e2e")]
    return [
        Part("gpu_tests", [py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *gpu_test_files()],
             limits["gpu_tests"], parse="pytest"),
        Part("rollout", [py, str(ROOT / "benchmarks" / "rollout.py"), "--backends", "hf,native", *tiny],
             limits["rollout"]),
        Part("train", [py, str(ROOT / "benchmarks" / "train.py"), *tiny], limits["train"]),
        Part("grpo_step", [py, str(ROOT / "benchmarks" / "grpo_step.py"), *tiny], limits["grpo_step"]),
        Part("e2e_local", e2e + (["--dry-run"] if dry_run else []), limits["e2e_local"], parse="e2e"),
    ]


def run_part(part: Part, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    """Run one part in its own session; on its time limit, kill that session (the part and its children)."""
    log_path = log_dir / f"{part.name}.log"
    start = time.perf_counter()
    print(f"== {part.name} (limit {part.limit_s:.0f}s): {' '.join(part.argv)}", flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(part.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=part.limit_s)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this part started, nothing else
            proc.wait()
            rc, status = None, "timeout"
    text = log_path.read_text(errors="replace")
    result: dict[str, Any] = {"status": status, "returncode": rc, "seconds": round(time.perf_counter() - start, 1),
                              "limit_s": part.limit_s, "log": str(log_path)}
    result.update(PARSERS[part.parse](text))
    if status != "ok":
        result["log_tail"] = text[-3000:]
    print(f"   {status} in {result['seconds']}s", flush=True)
    return result


def parse_json_lines(text: str) -> dict[str, Any]:
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return {"records": records}


def parse_pytest(text: str) -> dict[str, Any]:
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text)}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    return {"counts": counts, "failed_tests": failed}


PARSERS = {"json_lines": parse_json_lines, "pytest": parse_pytest,
           "e2e": lambda text: {"records": parse_json_lines(text)["records"][-1:]}}


def check_goals(parts: dict[str, dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    """docs/performance.md's goals against this run's figures (``met`` is None where a figure is missing, and in
    a dry run, whose tiny CPU figures say nothing about them)."""

    def record(part: str, **match: Any) -> dict[str, Any]:
        for r in parts.get(part, {}).get("records", []):
            if all(r.get(k) == v for k, v in match.items()):
                return r
        return {}

    native, verl_train = record("rollout", backend="native"), record("train", path="verl")
    grpo, e2e = record("grpo_step"), record("e2e_local")

    def at_least(value: Any, goal: float) -> dict[str, Any]:
        return {"value": value, "goal": goal, "met": None if value is None or dry_run else value >= goal}

    return {
        "rollout_native_tokens_per_s": at_least(native.get("tokens_per_s"), 100_000),
        "rollout_native_speedup_vs_hf": at_least(native.get("speedup_vs_hf"), 5.0),
        "train_speedup_vs_transformers": at_least(verl_train.get("speedup_vs_transformers"), 1.5),
        "grpo_step_completion_tokens_per_s": at_least(grpo.get("completion_tokens_per_s"), 32_000),
        "e2e_local_seconds_to_first_step": {"value": e2e.get("seconds_to_first_step"), "goal": None, "met": None},
    }


def install_wheels(wheel_dir: Path, target: Path) -> list[str]:
    """Put every pure-Python wheel of ``wheel_dir`` into ``target`` (added to PYTHONPATH), without touching the
    interpreter's environment: ``pip install --target`` when pip works, else the wheel unzipped (which is what
    installing a pure-Python wheel amounts to)."""
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        return []
    target.mkdir(parents=True, exist_ok=True)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                          "--target", str(target), *map(str, wheels)], capture_output=True, text=True)
    if pip.returncode != 0:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(target)
    return [w.name for w in wheels]


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                            "cuda": torch.version.cuda, "device": "cpu"}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["device"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    for name in ("transformers", "tensordict", "pyarrow", "pandas", "pytest", "ray", "omegaconf", "vllm"):
        try:  # without importing: Ray's presence must not change what the parts import
            info[name] = importlib.metadata.version(name) if importlib.util.find_spec(name) else None
        except importlib.metadata.PackageNotFoundError:
            info[name] = "present"
    return info


# ------------------------------------------------------------------------------------------------ e2e part


def e2e_local(out: Path, dry_run: bool) -> dict[str, Any]:
    """A short GRPO run through main_ppo in local mode on the quickstart's task and model builders."""
    py = sys.executable
    size = dict(hidden_size=64, num_layers=2, steps=2, n=2, batch=4, dtype="float32", device="cpu") if dry_run else \
        dict(hidden_size=512, num_layers=8, steps=4, n=8, batch=32, dtype="bfloat16", device="cuda")  # device-ok
    data, model, run_dir = out / "data", out / "model", out / "grpo"
    qs = ROOT / "examples" / "quickstart"
    subprocess.run([py, str(qs / "make_task.py"), "--out_dir", str(data), "--n_train", "256", "--n_test", "16"],
                   check=True, cwd=ROOT)
    subprocess.run([py, str(qs / "make_model.py"), "--out_dir", str(model), "--hidden_size", str(size["hidden_size"]),
                    "--num_layers", str(size["num_layers"])], check=True, cwd=ROOT)
    argv = [py, "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=grpo",
            f"data.train_files={data}/train.parquet", f"data.val_files={data}/test.parquet",
            f"data.train_batch_size={size['batch']}", "data.max_prompt_length=64", "data.max_response_length=16",
            f"actor_rollout_ref.model.path={model}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={size['batch'] // 2}",
            f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={min(64, size['batch'] // 2 * size['n'])}",
            "actor_rollout_ref.actor.optim.lr=1e-4",
            "actor_rollout_ref.rollout.name=native", f"actor_rollout_ref.rollout.n={size['n']}",
            f"actor_rollout_ref.rollout.dtype={size['dtype']}",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=128",
            f"trainer.device={size['device']}", "trainer.nnodes=1", "trainer.n_gpus_per_node=1",
            "trainer.execution_mode=local", f"trainer.total_training_steps={size['steps']}",
            f"trainer.save_freq={size['steps']}", f"trainer.test_freq={size['steps']}",
            "trainer.val_before_train=false",
            "trainer.logger=[file]", f"trainer.default_local_dir={run_dir}", "trainer.project_name=gpu_checks",
            "trainer.experiment_name=e2e_local"]
    print("$ " + " ".join(argv), flush=True)
    started = time.time()
    subprocess.run(argv, check=True, cwd=ROOT)
    total = time.time() - started
    with open(run_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    steps = [r for r in rows if r["step"] >= 1]
    checkpoint = run_dir / f"global_step_{size['steps']}" / "actor" / "model"
    record = {
        "benchmark": "e2e_local" + ("_tiny" if dry_run else ""),
        "steps": [r["step"] for r in steps],
        "seconds_to_first_step": round(steps[0]["time"] - started, 2),
        "seconds_total": round(total, 2),
        "step_s": [round(r["timing_s/step"], 3) for r in steps],
        "score_mean": [round(r["critic/score/mean"], 4) for r in steps],
        "checkpoint": str(checkpoint) if checkpoint.is_dir() else None,
        "execution_mode": "local",
    }
    print(json.dumps(record), flush=True)
    if record["checkpoint"] is None or record["steps"] != list(range(1, size["steps"] + 1)):
        raise SystemExit(f"e2e_local: expected steps 1..{size['steps']} and a checkpoint, got {record}")
    return record


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="every part on tiny sizes on CPU, same code")
    p.add_argument("--out", default=str(ROOT / "gpu_checks_out"), help="logs and summary.json go here")
    p.add_argument("--wheels", help="a folder of pure-Python wheels to make importable first")
    p.add_argument("--only", help="comma-separated parts to run (default: all)")
    p.add_argument("--limit", action="append", default=[], metavar="PART=SECONDS", help="override a part's limit")
    p.add_argument("--e2e-only", action="store_true", help=argparse.SUPPRESS)  # the e2e_local part itself
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.e2e_only:
        return e2e_local(out, args.dry_run)
    limits = dict(DRY_LIMITS if args.dry_run else LIMITS)
    for item in args.limit:
        name, _, seconds = item.partition("=")
        limits[name] = float(seconds)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    paths = [str(ROOT)]
    installed = install_wheels(Path(args.wheels), out / "site") if args.wheels else []
    if installed:
        paths.append(str(out / "site"))
        sys.path[:0] = [str(out / "site")]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if importlib.util.find_spec("tensordict") is None:
        print("tensordict is missing (verl's DataProto needs it) and the machine has no network: bring the wheels "
              "tensordict==0.15.3 pyvers==0.2.3 cloudpickle==3.1.2 in a folder and pass --wheels FOLDER "
              "(see benchmarks/run_gpu_checks.sh)", file=sys.stderr)
        return {"all_ok": False, "error": "tensordict missing"}
    if args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the tiny CPU variants, even on a machine with a GPU
    summary: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "dry_run": args.dry_run, "environment": environment(),
        "wheels_installed": installed, "parts": {},
    }
    wanted = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    for part in build_parts(args.dry_run, out, limits):
        if wanted is None or part.name in wanted:
            summary["parts"][part.name] = run_part(part, env, out)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["goals"] = check_goals(summary["parts"], args.dry_run)
    summary["all_ok"] = all(p["status"] == "ok" for p in summary["parts"].values())
    with open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps({k: summary[k] for k in ("date", "dry_run", "seconds", "all_ok", "goals")}, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    sys.exit(0 if main().get("all_ok", True) else 1)
