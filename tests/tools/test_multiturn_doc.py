"""docs/advance/multiturn.md: its tool written from scratch runs as printed, and the page names every
rollout.multi_turn key the schema has."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from verl.rollout.config import MultiTurnConfig

PAGE = Path(__file__).resolve().parents[2] / "docs" / "advance" / "multiturn.md"


def test_page_tool_runs(tmp_path):
    (block,) = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    (tmp_path / "page.py").write_text(block)
    proc = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tool answer and reward: 8798 1.0" in proc.stdout and "schema listed in the prompt: calc" in proc.stdout


def test_page_lists_every_multi_turn_key():
    text = PAGE.read_text()
    missing = [f.name for f in dataclasses.fields(MultiTurnConfig) if f"  {f.name}:" not in text]
    assert not missing, missing
