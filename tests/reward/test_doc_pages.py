"""The data and reward docs run as written: their python and bash blocks, in order, in one fresh directory.

Python blocks share one namespace (a page reads as one script); bash blocks run in between with this
interpreter's directory first on PATH, so ``python`` is the project's interpreter.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# page -> strings its blocks must print (a page that silently does nothing fails)
PAGES = {
    "docs/preparation/prepare_data.md": [
        "wrote 3 rows to data/gsm8k/train.parquet",
        "ground truth: 72",
        "input_ids: (4, 64)",
        "resumed batches match: True",
    ],
    "docs/preparation/reward_function.md": [
        "gsm8k: 1.0",
        "math: 1.0",
        "rewards: [2.0, 0.0]",
        "prime rewards: [1.0, 0.0, 1.0], timeouts: 1.0",
        "sandbox: timeout",
        "code score: 1.0",
    ],
}

_RUNNER = r'''
import json, os, subprocess, sys
blocks = json.loads(open(sys.argv[1]).read())
env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
namespace = {"__name__": "__main__"}
for i, (lang, code) in enumerate(blocks):
    print(f"--- block {i} ({lang})", flush=True)
    if lang == "python":
        exec(compile(code, f"<block {i}>", "exec"), namespace)
    else:
        subprocess.run(["bash", "-euo", "pipefail", "-c", code], check=True, env=env)
    sys.stdout.flush()
'''


def blocks(page: Path) -> list[tuple[str, str]]:
    return re.findall(r"```(python|bash)\n(.*?)```", page.read_text(), re.S)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_runs_as_written(page, tmp_path):
    found = blocks(ROOT / page)
    assert found, f"{page} has no python/bash blocks"
    (tmp_path / "blocks.json").write_text(json.dumps(found))
    (tmp_path / "runner.py").write_text(_RUNNER)
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "runner.py", "blocks.json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for expected in PAGES[page]:
        assert expected in proc.stdout, f"{page}: expected {expected!r} in output:\n{proc.stdout[-3000:]}"
