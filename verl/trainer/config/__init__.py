"""The PPO trainer's typed config: schema (dataclasses with the defaults), CLI loader, whole-tree checks."""

from verl.trainer.config.loader import dump_yaml, format_help, load_config, parse_args
from verl.trainer.config.schema import (
    AlgorithmConfig,
    FilterGroupsConfig,
    KLControlConfig,
    PPOConfig,
    RayInitConfig,
    TrainerConfig,
)
from verl.trainer.config.validate import (
    resolve_device,
    resolve_execution_mode,
    uses_critic,
    uses_reference,
    validate_config,
    world_size,
)

#: verl's name for the ``algorithm`` section's config.
AlgoConfig = AlgorithmConfig

__all__ = [
    "AlgoConfig",
    "AlgorithmConfig",
    "FilterGroupsConfig",
    "KLControlConfig",
    "PPOConfig",
    "RayInitConfig",
    "TrainerConfig",
    "dump_yaml",
    "format_help",
    "load_config",
    "parse_args",
    "resolve_device",
    "resolve_execution_mode",
    "uses_critic",
    "uses_reference",
    "validate_config",
    "world_size",
]
