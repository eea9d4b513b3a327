"""Data, reward and scorer modules stay light: importing them pulls in no Ray, transformers or datasets."""

import subprocess
import sys

MODULES = [
    "verl.data",
    "verl.data.preprocess.gsm8k",
    "verl.data.preprocess.math",
    "verl.reward",
    "verl.utils.reward_score",
    "verl.utils.tiny_model",
]


def test_imports_are_light():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "print(sorted(m for m in ('ray', 'transformers', 'datasets', 'tokenizers', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
