"""Docs stay runnable: the complete scripts in these pages are extracted and run as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# page -> the strings its script must print (so a page that silently does nothing fails)
RUNNABLE_PAGES = {
    "docs/single_controller.md": ["scores: [0.5, 2.5, 4.5, 6.5, 8.5]", "all-reduce: [2.0, 2.0]"],
    "docs/ppo_code_architecture.md": ["finished step 2", "metrics.jsonl has 2 lines"],
    "docs/advance/checkpoint.md": ["latest: 3", "merged == hf_model copy: True", "merged == DCP shards: True",
                                   "trained weights differ from the start: True"],
}


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


@pytest.mark.parametrize("page", sorted(RUNNABLE_PAGES))
def test_page_script_runs(page, tmp_path):
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no python block"
    script = tmp_path / "doc_script.py"
    script.write_text(blocks[-1])
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for expected in RUNNABLE_PAGES[page]:
        assert expected in proc.stdout, f"{page}: expected {expected!r} in output:\n{proc.stdout}"
