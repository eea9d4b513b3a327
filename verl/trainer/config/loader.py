"""The PPO command line: :mod:`verl.utils.cli` applied to :class:`PPOConfig`, and the YAML dump of the defaults."""

from __future__ import annotations

from collections.abc import Sequence

from verl.trainer.config.schema import PPOConfig
from verl.utils.cli import format_cli_help, load_cli_config, parse_overrides
from verl.utils.config import to_dict

__all__ = ["dump_yaml", "format_help", "load_config", "parse_args"]

USAGE = "usage: python -m verl.trainer.main_ppo [--config-path DIR --config-name NAME] key=value [+key=value ...]"

parse_args = parse_overrides


def load_config(argv: Sequence[str] = ()) -> PPOConfig:
    """The typed config: defaults, then the YAML file (if any), then the command-line overrides."""
    return load_cli_config(PPOConfig, argv)


def format_help() -> str:
    """Every key with its default and meaning (what ``--help`` prints)."""
    return format_cli_help(PPOConfig, USAGE)


def dump_yaml(config: PPOConfig | None = None) -> str:
    """The config as YAML; with no config, the defaults, verl's derived ones written as ``${source.key}``
    (keys that follow another key unless set, as in verl's ``ppo_trainer.yaml``)."""
    import yaml

    from verl.utils.cli import _defaults_tree

    return yaml.safe_dump(to_dict(config) if config is not None else _defaults_tree(PPOConfig), sort_keys=False)
