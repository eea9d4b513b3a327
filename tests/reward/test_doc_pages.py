"""The data and reward docs run as written: their python and bash blocks, in order, in one fresh directory.

Python blocks share one namespace (a page reads as one script); bash blocks run in between with this
interpreter's directory first on PATH, so ``python`` is the project's interpreter.
"""

import pytest

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
        "errors 1, invalid 1, timeouts 1, unusable 75%, in 1 s",
        "first failure: error - ValueError: cannot parse",
        "step 2: no usable reward in 2 consecutive training step(s) (trai",
        "sandbox: timeout",
        "code score: 1.0",
    ],
    "docs/advance/sandbox.md": ["in force: ", "secret read: False", "fork bomb: runtime_error"],
}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_runs_as_written(page, run_doc_page):
    run_doc_page(page, PAGES[page])
