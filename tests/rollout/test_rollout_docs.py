"""docs/workers/rollout.md stays runnable: its example runs as written and prints what the page says."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rollout_page_example_prints_what_the_page_shows(tmp_path):
    page = (ROOT / "docs" / "workers" / "rollout.md").read_text()
    script = re.findall(r"```python\n(.*?)```", page, re.S)[-1]
    expected = re.search(r"It prints:\n\n```text\n(.*?)```", page, re.S).group(1)
    (tmp_path / "example.py").write_text(script)
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == expected
