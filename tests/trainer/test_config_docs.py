"""docs/examples/config.md is generated from the schema and stays in sync with it."""

import subprocess
import sys
from pathlib import Path

import pytest

from verl.trainer.config import PPOConfig
from verl.trainer.config.__main__ import main as config_main
from verl.trainer.config.reference import MARKER, generated_markdown, render_page
from verl.utils.config import ConfigError, iter_fields

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "examples" / "config.md"


def test_page_is_in_sync_with_the_schema():
    current = PAGE.read_text()
    assert render_page(current) == current, (
        "docs/examples/config.md is out of date; run: python -m verl.trainer.config --markdown docs/examples/config.md"
    )


def test_every_key_has_a_row_with_its_default_and_meaning():
    page = PAGE.read_text()
    keys = list(iter_fields(PPOConfig))
    assert len(keys) > 200
    for key, _, doc in keys:
        assert f"| `{key}` |" in page, key
        assert doc, f"{key} has no docstring in the schema"
    assert "| `trainer.logger` | `[console]` |" in page
    assert "| `data.train_batch_size` | `1024` | Prompts per training step, globally" in page
    assert "| `trainer.total_training_steps` | `null` |" in page
    assert "| `algorithm.filter_groups.enable` | `false` |" in page


def test_regeneration_keeps_the_introduction_and_replaces_stale_tables():
    stale = f"# My intro\n\nhand-written text\n\n{MARKER}\n\n| `old.key` | `1` | gone |\n"
    page = render_page(stale)
    assert page.startswith("# My intro\n\nhand-written text\n\n" + MARKER)
    assert "old.key" not in page and page.endswith(generated_markdown())


def test_a_page_without_the_marker_is_refused():
    with pytest.raises(ConfigError, match="no generator marker line"):
        render_page("# intro only\n")


def test_cli_check_and_rewrite(tmp_path, capsys):
    page = tmp_path / "config.md"
    page.write_text(f"# intro\n\n{MARKER}\n\nstale\n")
    assert config_main(["--markdown", str(page), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert config_main(["--markdown", str(page)]) == 0
    assert page.read_text().startswith("# intro\n") and "stale" not in page.read_text()
    assert config_main(["--markdown", str(page), "--check"]) == 0


def test_module_still_prints_the_default_yaml():
    out = subprocess.run([sys.executable, "-m", "verl.trainer.config"], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out == (ROOT / "verl" / "trainer" / "config" / "ppo_trainer.yaml").read_text()
