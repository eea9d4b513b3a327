"""The SFT, checkpoint, model-merger and quickstart pages run as written: their python and bash blocks, in order,
in one fresh directory (python blocks share one namespace; bash blocks run with this interpreter first on PATH)."""

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
    "docs/sft.md": [
        "steps: 6, latest checkpoint: 6",
        "checkpoint: ['extra_state_world_size_2_rank_0.pt', 'extra_state_world_size_2_rank_1.pt', 'huggingface', "
        "'model', 'optim']",
        "validation loss fell: True",
        "export generates: True",
        "trained on: '5<|im_end|>It is 24.<|im_end|>'",
    ],
    "docs/advance/model_merger.md": [
        "OK: 26 tensors of checkpoints/demo/global_step_2 match merged",
        "Qwen2ForCausalLM with 26 tensors equal to the checkpoint: True",
    ],
    "docs/advance/checkpoint_merger.md": [
        "kept: ['global_step_4', 'global_step_5']",
        "latest: 5",
        "logged steps: [1, 2, 3, 4, 5]",
    ],
    "docs/start/tools_walkthrough.md": [
        "wrote 4 rows x 4 responses to gen/test_gen.parquet",
        "test_score/openai/gsm8k/pass@4: 0.0000",
        "rows: 4 responses per row: 4",
        "metrics: ['test_score/openai/gsm8k', 'test_score/openai/gsm8k/pass@1', 'test_score/openai/gsm8k/pass@2', "
        "'test_score/openai/gsm8k/pass@4']",
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


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_runs_as_written(page, tmp_path):
    found = re.findall(r"```(python|bash)\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert found, f"{page} has no python/bash blocks"
    (tmp_path / "blocks.json").write_text(json.dumps(found))
    (tmp_path / "runner.py").write_text(_RUNNER)
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "runner.py", "blocks.json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=400, env=env, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for expected in PAGES[page]:
        assert expected in proc.stdout, f"{page}: expected {expected!r} in output:\n{proc.stdout[-3000:]}"
