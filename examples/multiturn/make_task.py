"""The multi-turn example's task: two-digit multiplications (``What is 47 * 86?``) that a tiny model cannot do in its
head, with a calculator tool bound to the problem.

The tool, ``calculate`` (``calculator_tool.py``), is handed the problem's expression per sample through
``extra_info.tools_kwargs.calculate.create_kwargs.expression`` (as verl's GSM8K tool is handed the ground truth), so
the model only has to decide to call ``calculate()`` and then copy the tool's 4-digit answer after ``####``.
Products of two numbers in 32..99 always have 4 digits, so the answer sits at a fixed distance from the tool's.

Writes, in verl's formats:

- ``train.parquet`` / ``test.parquet``: RL rows (``prompt`` = system + user messages, ``agent_name: tool_agent``,
  ``reward_model.ground_truth``, ``extra_info.tools_kwargs``); the GSM8K rule scorer (``openai/gsm8k``) checks the
  final ``#### <product>``;
- ``sft.parquet``: demonstrations for the SFT warm-up (``messages`` with OpenAI ``tool_calls``, ``tools``) by a
  teacher who calls the calculator only ``p_tool`` of the time (default 0.4) and otherwise answers in its head by
  rounding both numbers to tens (right about 1% of the time). Imitation learns both habits; GRPO, rewarded for the
  right product, should learn to call the tool.

    python examples/multiturn/make_task.py --out_dir multiturn_out/data
"""

from __future__ import annotations

import argparse
import json
import os
import random

SYSTEM = "Use the calculate tool, then give the answer after ####."
TOOL = {"type": "function", "function": {
    "name": "calculate", "description": "Compute the problem's answer.",
    "parameters": {"type": "object", "properties": {}, "required": []}}}
LOW, HIGH = 32, 99  # 32 * 32 = 1024 and 99 * 99 = 9801: every product has 4 digits


def problem(rng: random.Random) -> tuple[int, int]:
    return rng.randint(LOW, HIGH), rng.randint(LOW, HIGH)


def expression(a: int, b: int) -> str:
    return f"{a} * {b}"


def question(a: int, b: int) -> str:
    return f"What is {expression(a, b)}?"


def in_head(a: int, b: int) -> int:
    """The teacher's answer without the tool: both numbers rounded to tens."""
    return round(a, -1) * round(b, -1)


def demonstration(a: int, b: int, rng: random.Random, p_tool: float) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question(a, b)}]
    if rng.random() < p_tool:
        call = {"type": "function", "function": {"name": "calculate", "arguments": "{}"}}
        return msgs + [{"role": "assistant", "content": "", "tool_calls": [call]},
                       {"role": "tool", "content": str(a * b)},
                       {"role": "assistant", "content": f"#### {a * b}"}]
    return msgs + [{"role": "assistant", "content": f"#### {in_head(a, b)}"}]


def rl_row(a: int, b: int, split: str, i: int) -> dict:
    return {"data_source": "openai/gsm8k", "agent_name": "tool_agent", "ability": "math",
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question(a, b)}],
            "reward_model": {"style": "rule", "ground_truth": str(a * b)},
            "extra_info": {"split": split, "index": i,
                           "tools_kwargs": {"calculate": {"create_kwargs": {"expression": expression(a, b)}}}}}


def build(out_dir: str, n_train: int = 3000, n_test: int = 200, seed: int = 0, p_tool: float = 0.4) -> dict[str, str]:
    import pandas as pd

    rng = random.Random(seed)
    test: set[tuple[int, int]] = set()
    while len(test) < n_test:
        test.add(problem(rng))
    train = []
    while len(train) < n_train:
        ab = problem(rng)
        if ab not in test:  # held out: the same skill, never the same problem
            train.append(ab)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, f"{name}.parquet") for name in ("train", "test", "sft")}
    pd.DataFrame([rl_row(a, b, "train", i) for i, (a, b) in enumerate(train)]).to_parquet(paths["train"])
    pd.DataFrame([rl_row(a, b, "test", i) for i, (a, b) in enumerate(sorted(test))]).to_parquet(paths["test"])
    sft = [{"messages": demonstration(a, b, rng, p_tool), "tools": json.dumps([TOOL])} for a, b in train]
    pd.DataFrame(sft).to_parquet(paths["sft"])
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default="multiturn_out/data")
    parser.add_argument("--n_train", type=int, default=3000)
    parser.add_argument("--n_test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p_tool", type=float, default=0.4, help="how often the SFT teacher uses the calculator")
    args = parser.parse_args()
    for path in build(args.out_dir, args.n_train, args.n_test, args.seed, args.p_tool).values():
        print("wrote", path)
