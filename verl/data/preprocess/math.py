"""MATH (lighteval) -> RL parquet: ``python -m verl.data.preprocess.math --local_dir ~/data/math``.

Source rows have ``problem``, ``solution`` (LaTeX, the final answer in ``\\boxed{}``), ``level`` and ``type``.
Each output row asks the problem with an instruction to box the answer and keeps the content of the
solution's last ``\\boxed{}`` as the ground truth for :mod:`verl.utils.reward_score.math`. Examples whose
solution has no box are skipped (and counted).
"""

from __future__ import annotations

from typing import Any

from verl.data.preprocess.common import run_preprocessor
from verl.utils.reward_score.math import extract_boxed_answer

__all__ = ["DATA_SOURCE", "INSTRUCTION", "main", "make_row"]

DATA_SOURCE = "DigitalLearningGmbH/MATH-lighteval"
INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


def make_row(example: dict[str, Any], split: str, index: int) -> dict[str, Any] | None:
    """One RL row from a MATH example, or ``None`` when its solution has no ``\\boxed{}`` answer."""
    answer = extract_boxed_answer(example["solution"])
    if answer is None:
        return None
    extra = {"split": split, "index": index}
    extra.update({k: example[k] for k in ("level", "type") if k in example})
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"{example['problem']} {INSTRUCTION}"}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": extra,
    }


def main(argv: list[str] | None = None) -> dict[str, str]:
    return run_preprocessor(argv, __doc__.splitlines()[0], DATA_SOURCE, "default", make_row)


if __name__ == "__main__":
    main()
