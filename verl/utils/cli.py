"""Command lines of the form ``python -m verl.trainer.<entry> a.b=c x.y=[1,2] +free.form=v ...``.

Shared by every entry point (``main_ppo``, ``fsdp_sft_trainer``, ``main_generation``, ``main_eval``):
``--config-path DIR --config-name NAME`` reads ``DIR/NAME.yaml`` first (verl/Hydra style); ``key=value``
arguments override it. Values parse as YAML (numbers, booleans, ``null``, ``[a,b]`` lists; ``3e-6`` is a
float). The result is merged over the dataclass defaults, ``${a.b}`` interpolations are resolved, and
:func:`verl.utils.config.from_mapping` checks it: an unknown key or a wrong type is a :class:`ConfigError`
naming the key. ``+key=value`` (Hydra's "add a key") is accepted inside mapping-typed keys.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

from verl.utils.config import ConfigError, from_mapping, iter_fields, to_dict

__all__ = ["format_cli_help", "load_cli_config", "parse_cli_config", "parse_overrides"]

T = TypeVar("T")


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


def _flag_value(args: list[str], i: int, flag: str) -> tuple[str, int]:
    if args[i] == flag:
        if i + 1 >= len(args):
            raise ConfigError(f"{flag} needs a value")
        return args[i + 1], i + 1
    return args[i].split("=", 1)[1], i


def parse_overrides(argv: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """``(nested overrides, YAML file or None)`` from ``key=value`` arguments and ``--config-path/--config-name``."""
    overrides: dict[str, Any] = {}
    config_path = config_name = None
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--config-path" or arg.startswith("--config-path="):
            config_path, i = _flag_value(args, i, "--config-path")
        elif arg == "--config-name" or arg.startswith("--config-name="):
            config_name, i = _flag_value(args, i, "--config-name")
        elif arg.startswith("~"):
            raise ConfigError(f"{arg!r}: deleting keys is not supported; set the key to null instead")
        elif "=" not in arg or arg.startswith("="):
            raise ConfigError(f"cannot parse argument {arg!r}: overrides look like key=value (see --help)")
        else:
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
    if config_path and not config_name:
        raise ConfigError("--config-path needs --config-name (the YAML file's name)")
    yaml_file = None
    if config_name:
        name = config_name if config_name.endswith((".yaml", ".yml")) else config_name + ".yaml"
        yaml_file = os.path.join(config_path or ".", name)
    return overrides, yaml_file


def load_cli_config(cls: type[T], argv: Sequence[str] = ()) -> T:
    """The typed config: ``cls`` defaults, then the YAML file (if any), then the command-line overrides."""
    overrides, yaml_file = parse_overrides(argv)
    values: dict[str, Any] = {}
    if yaml_file:
        import yaml

        if not os.path.isfile(yaml_file):
            raise ConfigError(f"config file {yaml_file} does not exist (from --config-path/--config-name)")
        with open(yaml_file) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{yaml_file} must hold a mapping of config sections")
    merged = _deep_merge(_deep_merge(to_dict(cls()), values), overrides)
    if _has_interpolation(merged):
        merged = _resolve_interpolations(merged)
    return from_mapping(cls, merged)


def _has_interpolation(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_interpolation(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_interpolation(v) for v in value)
    return isinstance(value, str) and "${" in value


def _resolve_interpolations(merged: dict) -> dict:
    """``${a.b}`` references resolved by omegaconf (imported only here: a config without any needs none)."""
    try:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:
        raise ConfigError("the config uses ${...} interpolations, which need omegaconf: pip install omegaconf, "
                          "or write the values out") from None
    try:
        return OmegaConf.to_container(OmegaConf.create(merged), resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve the config: {err}") from err


def format_cli_help(cls: type, usage: str, description: str = "") -> str:
    """Usage, description and every key with its default and meaning, grouped by top-level section."""
    lines = [usage, ""]
    if description:
        lines += [description.strip(), ""]
    lines.append("Keys (default) and meaning:")
    section = None
    for key, default, doc in iter_fields(cls):
        top = key.split(".")[0] if "." in key else ""
        if top != section:
            section = top
            lines.append(f"\n[{top}]" if top else "")
        lines.append(f"  {key} = {default!r}")
        if doc:
            lines.append(f"      {doc}")
    return "\n".join(lines)


def parse_cli_config(cls: type[T], argv: Sequence[str] | None, prog: str, description: str = "") -> T:
    """Build ``cls`` from the command line (``sys.argv[1:]`` when ``argv`` is None); ``-h``/``--help`` prints
    the keys and exits 0."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(format_cli_help(cls, f"usage: {prog} [--config-path DIR --config-name NAME] key=value ...", description))
        raise SystemExit(0)
    return load_cli_config(cls, args)
