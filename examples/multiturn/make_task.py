"""The multi-turn example's task: two-digit additions the tiny model cannot do in its head, with a calculator tool.

Writes, in verl's formats:

- ``train.parquet`` / ``test.parquet``: RL rows (``prompt`` = system + user messages, ``agent_name: tool_agent``,
  ``reward_model.ground_truth``); the GSM8K rule scorer (``openai/gsm8k``) checks the final ``#### <sum>``;
- ``sft.parquet``: demonstrations for the SFT warm-up (``messages`` with OpenAI ``tool_calls``, ``tools``), written by
  a teacher who uses the calculator only half of the time and otherwise adds in its head, forgetting the carry of
  the ones digit 70% of the time. Imitation learns both habits; GRPO, rewarded for the right sum, should learn to
  call the tool.

    python examples/multiturn/make_task.py --out_dir multiturn_out/data
"""

from __future__ import annotations

import argparse
import json
import os
import random

SYSTEM = "Use the calc tool for arithmetic, then give the answer after ####."
TOOL = {"type": "function", "function": {
    "name": "calc", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expr": {"type": "string", "description": "the expression, e.g. 47 + 38"}},
                   "required": ["expr"]}}}


def problem(rng: random.Random) -> tuple[int, int]:
    return rng.randint(10, 99), rng.randint(10, 99)


def question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def demonstration(a: int, b: int, rng: random.Random, p_tool: float, slip: float) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question(a, b)}]
    if rng.random() < p_tool:
        call = {"type": "function", "function": {"name": "calc", "arguments": json.dumps({"expr": f"{a} + {b}"})}}
        return msgs + [{"role": "assistant", "content": "", "tool_calls": [call]},
                       {"role": "tool", "content": str(a + b)},
                       {"role": "assistant", "content": f"#### {a + b}"}]
    carry = a % 10 + b % 10 >= 10
    guess = a + b - 10 if carry and rng.random() < slip else a + b
    return msgs + [{"role": "assistant", "content": f"#### {guess}"}]


def rl_row(a: int, b: int, split: str, i: int) -> dict:
    return {"data_source": "openai/gsm8k", "agent_name": "tool_agent", "ability": "math",
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question(a, b)}],
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": split, "index": i}}


def build(out_dir: str, n_train: int = 3000, n_test: int = 200, seed: int = 0, p_tool: float = 0.5,
          slip: float = 0.7) -> dict[str, str]:
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
    sft = [{"messages": demonstration(a, b, rng, p_tool, slip), "tools": json.dumps([TOOL])} for a, b in train]
    pd.DataFrame(sft).to_parquet(paths["sft"])
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default="multiturn_out/data")
    parser.add_argument("--n_train", type=int, default=3000)
    parser.add_argument("--n_test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p_tool", type=float, default=0.5, help="how often the SFT teacher uses the calculator")
    args = parser.parse_args()
    for path in build(args.out_dir, args.n_train, args.n_test, args.seed, args.p_tool).values():
        print("wrote", path)
