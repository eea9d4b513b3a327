"""Supervised fine-tuning entry point.

    torchrun --standalone --nproc_per_node 8 -m verl.trainer.fsdp_sft_trainer \\
        data.train_files=$HOME/data/gsm8k/train.parquet data.val_files=$HOME/data/gsm8k/test.parquet \\
        data.prompt_key=extra_info data.response_key=extra_info \\
        data.prompt_dict_keys=[question] data.response_dict_keys=[answer] \\
        model.partial_pretrain=$HOME/models/Qwen2.5-0.5B-Instruct trainer.total_epochs=2

Also runs as one process (``python -m verl.trainer.fsdp_sft_trainer ...``, no process group). Under torchrun
(``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set) every rank joins one process group (nccl on GPUs, gloo on CPU).
``--help`` lists every key. See ``docs/sft.md``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from verl.trainer.sft.config import SFTConfig

__all__ = ["FSDPSFTTrainer", "SFTConfig", "init_distributed", "main", "parse_config", "run_sft"]


def __getattr__(name: str):
    if name == "FSDPSFTTrainer":  # lazily: the trainer imports transformers-facing modules
        from verl.trainer.sft.trainer import FSDPSFTTrainer

        return FSDPSFTTrainer
    raise AttributeError(name)


ENGINE_CONFIG = "sft_trainer_engine"


def _names_engine_config(args: Sequence[str]) -> bool:
    from pathlib import Path

    from verl.utils.cli import parse_command_line

    args = [a for a in args if a not in ("--help", "-h")]  # help is printed by the config parser below
    name = parse_command_line(args).config_name
    return bool(name) and Path(name.strip("'\"")).name.removesuffix(".yaml") == ENGINE_CONFIG


def parse_config(argv: Sequence[str] | None = None, engine: bool = False) -> SFTConfig:
    """The :class:`SFTConfig` of ``key=value`` command-line overrides (``--help`` prints the keys). With
    ``engine`` (or ``--config-name sft_trainer_engine``) the keys are those of verl's engine SFT config
    (:mod:`verl.trainer.sft.engine_config`), translated to :class:`SFTConfig`."""
    from verl.utils.cli import parse_cli_config

    args = list(sys.argv[1:] if argv is None else argv)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if engine or _names_engine_config(args):
        from verl.trainer.sft.engine_config import SFTEngineConfig

        if engine and not _names_engine_config(args):
            args = ["--config-name", ENGINE_CONFIG, *args]
        cfg = parse_cli_config(SFTEngineConfig, args, "python -m verl.trainer.sft_trainer", __doc__.split("\n\n")[0],
                               check=lambda c: c.to_sft_config().validate(world))  # for --cfg job
        return cfg.to_sft_config()
    return parse_cli_config(SFTConfig, args, "python -m verl.trainer.fsdp_sft_trainer", __doc__.split("\n\n")[0],
                            check=lambda cfg: cfg.validate(world))  # for --cfg job


def init_distributed() -> None:
    """Join torchrun's process group when its environment is set (no-op for a plain single process)."""
    import torch
    import torch.distributed as dist

    from verl.utils.device import get_device_name, get_dist_backend

    if dist.is_initialized() or not all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return
    if get_device_name() == "cuda":  # device-ok: pin this rank's GPU before nccl sees it
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=get_dist_backend())


def run_sft(config: SFTConfig) -> dict[str, float]:
    """Train with ``config`` in this process (joining torchrun's group if any); returns the last step's metrics."""
    import torch.distributed as dist

    from verl.trainer.sft.trainer import FSDPSFTTrainer

    init_distributed()
    try:
        return FSDPSFTTrainer(config).fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def main(argv: Sequence[str] | None = None, engine: bool = False) -> dict[str, float]:
    from verl.utils.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = parse_config(argv, engine)
        world = int(os.environ.get("WORLD_SIZE", 1))
        config.validate(world)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    return run_sft(config)


if __name__ == "__main__":
    main()
