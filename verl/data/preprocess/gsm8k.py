"""GSM8K -> RL parquet: ``python -m verl.data.preprocess.gsm8k --local_dir ~/data/gsm8k``.

Source rows have ``question`` and ``answer`` (a worked solution ending in ``#### <number>``). Each output row asks
the question with an instruction to end with ``####`` and keeps the number after ``####`` (commas removed) as
the ground truth for :mod:`verl.utils.reward_score.gsm8k`.
"""

from __future__ import annotations

import re
from typing import Any

from verl.data.preprocess.common import run_preprocessor

__all__ = ["DATA_SOURCE", "INSTRUCTION", "extract_solution", "main", "make_row"]

DATA_SOURCE = "openai/gsm8k"
INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'
_FINAL = re.compile(r"####\s*(-?[0-9.,$]+)")


def extract_solution(answer: str) -> str:
    """The final number of a GSM8K reference solution (after ``####``), without commas or ``$``."""
    match = _FINAL.search(answer)
    if match is None:
        raise ValueError(f"GSM8K answer has no '#### <number>' line: {answer[-120:]!r}")
    return match.group(1).replace(",", "").replace("$", "").rstrip(".")


def make_row(example: dict[str, Any], split: str, index: int) -> dict[str, Any]:
    """One RL row from a GSM8K example."""
    question, answer = example["question"], example["answer"]
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"{question} {INSTRUCTION}"}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": extract_solution(answer)},
        "extra_info": {"split": split, "index": index, "answer": answer, "question": question},
    }


def main(argv: list[str] | None = None) -> dict[str, str]:
    return run_preprocessor(argv, __doc__.splitlines()[0], DATA_SOURCE, "main", make_row)


if __name__ == "__main__":
    main()
