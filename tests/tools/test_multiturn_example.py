"""examples/multiturn: the task's rows and the calculator tool bound to each problem (the training run itself is an
example script, measured in docs/advance/multiturn.md, not a test)."""

import asyncio
import os
import sys

import pandas as pd

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "multiturn")
sys.path.insert(0, EXAMPLE)
from make_task import build  # noqa: E402

from verl.tools.utils.tool_registry import initialize_tools_from_config  # noqa: E402


def test_task_rows_and_the_bound_calculator(tmp_path):
    paths = build(str(tmp_path), n_train=200, n_test=20, seed=3)
    train, test, sft = (pd.read_parquet(paths[k]) for k in ("train", "test", "sft"))
    truths = [r["ground_truth"] for r in train["reward_model"]] + [r["ground_truth"] for r in test["reward_model"]]
    assert all(len(t) == 4 for t in truths), "every product has 4 digits"
    questions = lambda df: {m[-1]["content"] for m in df["prompt"]}  # noqa: E731
    assert not questions(train) & questions(test), "held-out problems never appear in training"
    with_tool = sum(any(m["role"] == "tool" for m in msgs) for msgs in sft["messages"])
    assert 40 < with_tool < 120, "the teacher calls the tool about 40% of the time"

    (calc,) = initialize_tools_from_config(os.path.join(EXAMPLE, "config", "calculator_tool_config.yaml"))
    row = test.iloc[0]
    kwargs = row["extra_info"]["tools_kwargs"]["calculate"]

    async def calls():
        instance, _ = await calc.create(create_kwargs=dict(kwargs["create_kwargs"]))
        bound = (await calc.execute(instance, {}))[0].text
        explicit = (await calc.execute(instance, {"expr": "(2 + 3) * 4"}))[0].text
        refused = (await calc.execute(instance, {"expr": "__import__('os')"}))[0].text
        reward = await calc.calc_reward(instance)
        await calc.release(instance)
        return bound, explicit, refused, reward

    bound, explicit, refused, reward = asyncio.run(calls())
    assert bound == row["reward_model"]["ground_truth"] and explicit == "20"
    assert refused.startswith("error:") and reward == 2.0  # two calls succeeded
