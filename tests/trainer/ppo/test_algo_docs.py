"""docs/algo pages run as written: each page's python blocks, in order, in one namespace."""

import re
from pathlib import Path

import pytest

from verl.trainer.ppo import core_algos

ROOT = Path(__file__).resolve().parents[3]
PAGES = ["docs/algo/ppo.md", "docs/algo/grpo.md", "docs/algo/baselines.md"]


@pytest.fixture
def restore_registries():
    """The baselines page registers plug-ins; keep them from leaking into other tests."""
    adv, pol = dict(core_algos.ADV_ESTIMATOR_REGISTRY), dict(core_algos.POLICY_LOSS_REGISTRY)
    yield
    for live, saved in ((core_algos.ADV_ESTIMATOR_REGISTRY, adv), (core_algos.POLICY_LOSS_REGISTRY, pol)):
        live.clear()
        live.update(saved)


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_as_written(page, restore_registries, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert len(blocks) >= 2, f"{page} has too few runnable examples"
    namespace: dict = {"__name__": "__doc_page__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}[block {i}]", "exec"), namespace)  # noqa: S102 - our own docs
    assert capsys.readouterr().out.strip(), f"{page} printed nothing"
