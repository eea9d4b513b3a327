"""verl's newer SFT entry point: ``python -m verl.trainer.sft_trainer key=value ...`` with the keys of verl's
``sft_trainer_engine`` config (``model.path``, ``engine.*``, ``optim.*``, ``data.messages_key``, ...), trained by
the same SFT trainer as :mod:`verl.trainer.fsdp_sft_trainer` (see :mod:`verl.trainer.sft.engine_config`).

    torchrun --standalone --nproc_per_node 8 -m verl.trainer.sft_trainer \\
        data.train_files=$HOME/data/multiturn/train.parquet model.path=$HOME/models/Qwen2.5-0.5B-Instruct
"""

from __future__ import annotations

from collections.abc import Sequence

from verl.trainer.fsdp_sft_trainer import main as _main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    return _main(argv, engine=True)


if __name__ == "__main__":
    main()
