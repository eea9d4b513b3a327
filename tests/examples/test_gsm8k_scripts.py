"""The GSM8K example scripts only use keys the config knows, with values of the right type."""

import re
import shlex
from pathlib import Path

import pytest

from verl.trainer.config import load_config

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "examples" / "gsm8k").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_overrides_parse(script):
    text = script.read_text()
    command = re.search(r"python -m verl\.trainer\.main_ppo \\\n(.*?)\"\$@\"", text, re.S).group(1)
    command = command.replace("\\\n", " ").replace("$MODEL", "/m").replace("$DATA", "/d")
    cfg = load_config(shlex.split(command))
    assert cfg.actor_rollout_ref.model.path == "/m" and cfg.trainer.device == "cuda"
