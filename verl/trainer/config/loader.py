"""Command-line config: ``key=value`` overrides (and an optional YAML file) over the dataclass defaults.

``a.b=c`` sets a known key; ``+a.b.c=v`` adds a free-form entry inside a mapping-typed key (e.g.
``+actor_rollout_ref.model.override_config.attention_dropout=0.0``). ``--config-path DIR --config-name NAME``
reads ``DIR/NAME.yaml`` first (verl/Hydra style). Values are parsed as YAML (numbers, booleans, ``null``,
``[a,b]`` lists).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from verl.trainer.config.schema import PPOConfig
from verl.utils.config import ConfigError, from_mapping, iter_fields, to_dict

__all__ = ["format_help", "load_config", "parse_args"]


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_value(raw: str) -> Any:
    import yaml

    if raw == "":
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # e.g. an unquoted string with a colon: take it verbatim
    if isinstance(value, str) and value == raw:
        try:
            return float(raw)  # YAML 1.1 reads 3e-6 (no dot) as a string
        except ValueError:
            return value
    return value


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """``(nested overrides, yaml file or None)`` from ``key=value`` arguments and ``--config-path/--config-name``."""
    overrides: dict[str, Any] = {}
    config_path = config_name = None
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        for flag in ("--config-path", "--config-name"):
            if arg == flag or arg.startswith(flag + "="):
                if arg == flag:
                    if i + 1 >= len(args):
                        raise ConfigError(f"{flag} needs a value")
                    value, i = args[i + 1], i + 1
                else:
                    value = arg.split("=", 1)[1]
                if flag == "--config-path":
                    config_path = value
                else:
                    config_name = value
                break
        else:
            if "=" not in arg:
                raise ConfigError(f"cannot parse argument {arg!r}: overrides look like key=value (see --help)")
            key, raw = arg.split("=", 1)
            key = key.lstrip("+")
            if not key or any(not part for part in key.split(".")):
                raise ConfigError(f"bad config key {key!r} in {arg!r}")
            node = overrides
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{key}: {part} was already given a value, it cannot also be a section")
            node[leaf] = _parse_value(raw)
        i += 1
    yaml_file = None
    if config_name:
        name = config_name if config_name.endswith((".yaml", ".yml")) else config_name + ".yaml"
        yaml_file = os.path.join(config_path or ".", name)
    elif config_path:
        raise ConfigError("--config-path needs --config-name (the YAML file's name)")
    return overrides, yaml_file


def load_config(argv: Sequence[str] = ()) -> PPOConfig:
    """The typed config: defaults, then the YAML file (if any), then the command-line overrides."""
    overrides, yaml_file = parse_args(argv)
    values: dict[str, Any] = {}
    if yaml_file:
        import yaml

        if not os.path.isfile(yaml_file):
            raise ConfigError(f"config file {yaml_file} does not exist (from --config-path/--config-name)")
        with open(yaml_file) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{yaml_file} must hold a mapping of config sections")
    return from_mapping(PPOConfig, _deep_merge(values, overrides))


def format_help() -> str:
    """Every key with its default and meaning (what ``--help`` prints)."""
    lines = [
        "usage: python -m verl.trainer.main_ppo [--config-path DIR --config-name NAME] key=value [+key=value ...]",
        "",
        "Keys (default) and meaning:",
    ]
    section = None
    for key, default, doc in iter_fields(PPOConfig):
        top = key.split(".")[0]
        if top != section:
            section = top
            lines.append(f"\n[{top}]")
        lines.append(f"  {key} = {default!r}")
        if doc:
            lines.append(f"      {doc}")
    return "\n".join(lines)


def dump_yaml(config: PPOConfig | None = None) -> str:
    """The config as YAML (the defaults when ``config`` is None)."""
    import yaml

    return yaml.safe_dump(to_dict(config or PPOConfig()), sort_keys=False)
