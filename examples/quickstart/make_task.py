"""Step 1 of the quickstart: a synthetic arithmetic task in verl's parquet format (GSM8K-style answers).

Each problem adds two one-digit numbers inside a short word problem; the answer ends with ``#### <sum>`` so the
GSM8K rule scorer (``openai/gsm8k``) checks it. Writes ``train.parquet`` / ``test.parquet`` (RL rows: ``prompt``
as chat messages, ``reward_model.ground_truth``). No test prompt appears in the training files.

The SFT warm-up imitates demonstrations in ``extra_info.answer`` written by a *sloppy teacher*: when a sum
carries (a + b >= 10) the teacher often forgets the carry and writes a + b - 10. Imitation learns the slip;
GRPO, rewarded by the rule scorer against the true sum, learns to stop making it.

    python examples/quickstart/make_task.py --out_dir quickstart_out/data
"""

from __future__ import annotations

import argparse
import os
import random

NAMES = ["Ann", "Ben", "Cat", "Dan", "Eva", "Finn", "Gus", "Hal", "Ivy", "Jo", "Kim", "Lea"]
OBJECTS = ["apples", "books", "coins", "cups", "pens", "stones", "toys", "cards"]
TEMPLATES = [
    "What is {a} + {b}?",
    "{name} has {a} {obj} and gets {b} more. How many {obj} does {name} have?",
    "Add {a} and {b}.",
    "{name} had {a} {obj} and found {b} more. How many {obj} now?",
]


def make_problem(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    template = rng.choice(TEMPLATES)
    return template.format(a=a, b=b, name=rng.choice(NAMES), obj=rng.choice(OBJECTS)), a + b


def teacher_answer(answer: int, rng: random.Random, slip: float) -> int:
    """The sloppy teacher: forgets the carry with probability ``slip``."""
    return answer - 10 if answer >= 10 and rng.random() < slip else answer


def rows(problems: list[tuple[str, int]], split: str, rng: random.Random, slip: float) -> list[dict]:
    return [{
        "data_source": "openai/gsm8k",
        "prompt": [{"role": "user", "content": question}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": str(answer)},
        "extra_info": {"split": split, "index": i, "question": question,
                       "answer": f"#### {teacher_answer(answer, rng, slip)}"},
    } for i, (question, answer) in enumerate(problems)]


def build(out_dir: str, n_train: int = 4000, n_test: int = 200, seed: int = 0, slip: float = 0.7) -> tuple[str, str]:
    import pandas as pd

    rng = random.Random(seed)
    test: dict[str, int] = {}
    while len(test) < n_test:
        question, answer = make_problem(rng)
        test[question] = answer
    train = []
    while len(train) < n_train:
        question, answer = make_problem(rng)
        if question not in test:  # held out: the same skill, never the same problem
            train.append((question, answer))
    os.makedirs(out_dir, exist_ok=True)
    paths = os.path.join(out_dir, "train.parquet"), os.path.join(out_dir, "test.parquet")
    pd.DataFrame(rows(train, "train", rng, slip)).to_parquet(paths[0])
    pd.DataFrame(rows(list(test.items()), "test", rng, 0.0)).to_parquet(paths[1])
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default="quickstart_out/data")
    parser.add_argument("--n_train", type=int, default=4000)
    parser.add_argument("--n_test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher_slip", type=float, default=0.7, help="how often the SFT teacher forgets a carry")
    args = parser.parse_args()
    for path in build(args.out_dir, args.n_train, args.n_test, args.seed, args.teacher_slip):
        print("wrote", path)
