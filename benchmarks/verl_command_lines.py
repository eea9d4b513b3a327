"""How many of verl's ``main_ppo`` example command lines are accepted unchanged here, and what stops the rest.

    python benchmarks/verl_command_lines.py --verl PATH/TO/verl/checkout [--json out.json]

Each ``examples/**/*.sh`` script of the verl checkout that calls ``python3 -m verl.trainer.main_ppo`` is run by
bash with ``python3``/``python`` replaced by a recorder (and ``ray``, ``nvidia-smi``, ``pip``, downloads by no-ops),
so shell variables expand as the script sets them; ``HOME`` is a scratch directory. Every recorded argument list is
then given to ``main_ppo --cfg job`` (compose and check, start nothing), with model paths pointing at a local
tiny model (``--cfg job`` may read a model's ``config.json``), unchanged and with its tensor-parallel sizes removed. For a refused line, the refused key is dropped and the line retried, until it is accepted: each key
dropped on the way is a blocker of that line. Prints the counts and the blockers by the number of lines they stop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

RECORDER = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "verl.trainer.main_ppo" ]; then
  shift 2
  "$REAL_PYTHON" -c 'import json,os,sys; open(os.environ["REC"],"a").write(json.dumps({"script":os.environ["SCRIPT"],"argv":sys.argv[1:]})+"\\n")' "$@"
fi
exit 0
"""
NO_OPS = ("ray", "nvidia-smi", "huggingface-cli", "hf", "pip", "wget", "git", "torchrun", "srun", "curl")
TP = re.compile(r"tensor_model_parallel_size=(?!1$)")
KEY_IN_ERROR = re.compile(r"([A-Za-z_][\w]*(?:\.[\w\[\]]+)+)")


def extract(verl: Path, work: Path) -> list[dict]:
    """``[{"script", "argv"}]`` of every main_ppo call of verl's example scripts."""
    shim, home, rec = work / "shim", work / "home", work / "lines.jsonl"
    shim.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    for name in ("python3", "python"):
        (shim / name).write_text(RECORDER)
        (shim / name).chmod(0o755)
    for name in NO_OPS:
        (shim / name).write_text("#!/bin/sh\nexit 0\n")
        (shim / name).chmod(0o755)
    scripts = sorted(p for p in (verl / "examples").rglob("*.sh") if "verl.trainer.main_ppo" in p.read_text(errors="ignore"))
    for script in scripts:
        rel = str(script.relative_to(verl))
        env = {"PATH": f"{shim}:/usr/bin:/bin", "HOME": str(home), "REC": str(rec), "SCRIPT": rel,
               "REAL_PYTHON": sys.executable}
        subprocess.run(["bash", rel], cwd=verl, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    lines = [json.loads(line) for line in rec.read_text().splitlines()] if rec.exists() else []
    for line in lines:
        line["argv"] = [a.replace(str(home), "$HOME") for a in line["argv"]]
    return lines


def cfg_job(argv: list[str]) -> tuple[int, str]:
    from verl.trainer.main_ppo import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["--cfg", "job", *argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
        except Exception as exc:  # noqa: BLE001 - a crash is a finding too
            return 99, f"{type(exc).__name__}: {exc}"
    return code, err.getvalue().strip()


def blocker(argv: list[str], error: str) -> int | None:
    """The index of the (last) argument setting a key the error names, or None."""
    for key in (k.rstrip(".") for k in KEY_IN_ERROR.findall(error)):
        for i in range(len(argv) - 1, -1, -1):
            if argv[i].lstrip("+~").split("=", 1)[0] == key:
                return i
    return None


def blockers(argv: list[str], limit: int = 15) -> tuple[list[str], str]:
    """Keys to drop until the line is accepted (and the last error when no argument could be named)."""
    found: list[str] = []
    argv = list(argv)
    for _ in range(limit):
        code, err = cfg_job(argv)
        if code == 0:
            return found, ""
        i = blocker(argv, err)
        if i is None:
            return found, err.splitlines()[-1] if err else f"exit {code}"
        found.append(argv.pop(i).lstrip("+~").split("=", 1)[0])
    return found, "too many blockers"


MODEL_KEYS = ("actor_rollout_ref.model.path", "critic.model.path", "reward_model.model.path",
              "actor_rollout_ref.model.tokenizer_path", "critic.model.tokenizer_path")


def localize(argv: list[str], model: str) -> list[str]:
    """Model paths pointing at a local model (as a user's would: ``--cfg job`` may read its ``config.json``)."""
    return [f"{a.split('=', 1)[0]}={model}" if a.lstrip("+").split("=", 1)[0] in MODEL_KEYS else a for a in argv]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])  # noqa
    parser.add_argument("--verl", required=True, type=Path, help="a checkout of volcengine/verl")
    parser.add_argument("--json", type=Path, help="write the per-line results here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from verl.utils.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="verl_lines_"))
    lines = extract(args.verl.resolve(), work)
    model = build_tiny_model(work / "model", num_layers=1)
    accepted = accepted_no_tp = 0
    counts: Counter = Counter()
    unnamed: Counter = Counter()
    results = []
    for line in lines:
        argv = localize(line["argv"], model)
        code, _ = cfg_job(argv)
        no_tp = [a for a in argv if not TP.search(a)]
        code_no_tp = code if no_tp == argv else cfg_job(no_tp)[0]
        accepted += code == 0
        accepted_no_tp += code_no_tp == 0
        found, rest = ([], "") if code_no_tp == 0 else blockers(no_tp)
        counts.update(dict.fromkeys(found, 1))
        if rest:
            unnamed[rest[:160]] += 1
        results.append({**line, "accepted": code == 0, "accepted_without_tp": code_no_tp == 0, "blockers": found,
                        "unnamed": rest})
    print(f"{len(lines)} main_ppo command lines in {len({line['script'] for line in lines})} scripts")
    print(f"accepted unchanged: {accepted}; accepted without their tensor-parallel sizes: {accepted_no_tp}")
    print("blockers (lines each stops, after removing tensor-parallel sizes):")
    for key, n in counts.most_common():
        print(f"  {n:4d}  {key}")
    for text, n in unnamed.most_common():
        print(f"  {n:4d}  (no key named) {text}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
