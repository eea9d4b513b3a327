"""Command lines of the form ``python -m verl.trainer.<entry> a.b=c x.y=[1,2] +free.form=v ~a.b ...``.

Shared by every entry point (``main_ppo``, ``fsdp_sft_trainer``, ``main_generation``, ``main_eval``), with
Hydra's conventions as verl's entry points have them:

- ``--config-path DIR --config-name NAME`` composes ``DIR/NAME.yaml`` and its ``defaults:`` list
  (:mod:`verl.utils.config_compose`); verl's own config names (``ppo_trainer``, ``sft_trainer``, ...) are this
  library's built-in defaults.
- ``key=value`` sets a key; ``+key=value`` adds one (inside free-form mappings such as
  ``model.override_config``; on a key the schema already has it simply sets it); ``++key=value`` sets or adds;
  ``~key`` (or ``~key=value``) removes a key: a free-form entry disappears, a schema key returns to its default.
- ``group=option`` / ``group@package=option`` select a config group option, as verl's ``optim=fsdp``.
- ``--cfg job`` (also ``all``) prints the composed, checked config as YAML and exits without starting anything;
  ``--resolve`` is accepted (the printed config is always resolved).
- ``hydra.*`` / ``hydra/...`` overrides configure Hydra itself (run directory, logging) and are skipped.

Values parse as YAML (numbers, booleans, ``null``, ``[a,b]`` lists; ``3e-6`` is a float). The result is merged
over the dataclass defaults, ``${a.b}`` interpolations are resolved (verl's derived defaults are such
interpolations, see ``derived_defaults``), and :func:`verl.utils.config.from_mapping` checks it: an unknown key
or a wrong type is a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from verl.utils.config import ConfigError, from_mapping, iter_fields, to_dict

__all__ = ["CommandLine", "format_cli_help", "load_cli_config", "parse_cli_config", "parse_command_line",
           "parse_overrides", "print_config_and_exit"]

T = TypeVar("T")


@dataclasses.dataclass
class CommandLine:
    """One parsed command line."""

    overrides: list[tuple[str, str, Any]] = dataclasses.field(default_factory=list)
    """``(op, dotted key, value)`` in order; op is ``set``, ``add`` (``+``), ``force`` (``++``), ``delete`` (``~``)
    or ``group`` (``group=option`` selections, checked by :func:`verl.utils.config_compose.check_group_option`)."""
    config_path: str | None = None
    config_name: str | None = None
    cfg: str | None = None
    """``job`` / ``all`` / ``hydra`` from ``--cfg``: print the config and exit."""


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


_FLAGS_WITH_VALUE = ("--config-path", "--config-name", "--config-dir", "--cfg", "--package", "-cp", "-cn", "-c", "-p")
_FLAG_NAMES = {"-cp": "--config-path", "-cn": "--config-name", "-c": "--cfg", "-p": "--package"}


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Split ``argv`` into Hydra-style flags and ordered overrides (nothing is applied yet)."""
    line = CommandLine()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        flag = next((f for f in _FLAGS_WITH_VALUE if arg == f or arg.startswith(f + "=")), None)
        if flag:
            if arg == flag:
                if i + 1 >= len(args):
                    raise ConfigError(f"{flag} needs a value")
                value, i = args[i + 1], i + 1
            else:
                value = arg.split("=", 1)[1]
            flag = _FLAG_NAMES.get(flag, flag)
            value = value.strip("'\"")
            if flag == "--config-path":
                line.config_path = value
            elif flag == "--config-name":
                line.config_name = value
            elif flag == "--cfg":
                if value not in ("job", "all", "hydra"):
                    raise ConfigError(f"--cfg {value}: use job (the config), all or hydra")
                line.cfg = value
            elif flag == "--config-dir":
                raise ConfigError("--config-dir (an extra search directory) is not supported; put the file in "
                                  "--config-path or name it by path")
            # --package: only meaningful with --cfg in Hydra; the whole config is printed here
        elif not arg.strip():
            pass  # an empty argument (a stray quoted space in a script): nothing to apply
        elif arg in ("--resolve", "--multirun", "-m") or arg.startswith("--hydra-help"):
            if arg in ("--multirun", "-m"):
                raise ConfigError(f"{arg}: Hydra multirun sweeps are not supported; run one command per setting")
        elif arg.startswith("~"):
            key = arg[1:].split("=", 1)[0]
            _check_key(key, arg)
            line.overrides.append(("delete", key, None))
        elif "=" not in arg or arg.startswith("="):
            raise ConfigError(f"cannot parse argument {arg!r}: overrides look like key=value (see --help)")
        else:
            key, raw = arg.split("=", 1)
            op = "force" if key.startswith("++") else "add" if key.startswith("+") else "set"
            key = key.lstrip("+")
            if key.split(".")[0].split("/")[0] == "hydra":
                i += 1
                continue  # Hydra's own settings (run dir, logging): there is no Hydra app to configure
            if "@" in key or "/" in key:
                line.overrides.append(("group", key, raw))
                i += 1
                continue
            _check_key(key, arg)
            line.overrides.append((op, key, _parse_value(raw)))
        i += 1
    if line.config_path and not line.config_name:
        raise ConfigError("--config-path needs --config-name (the YAML file's name)")
    return line


def _check_key(key: str, arg: str) -> None:
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad config key {key!r} in {arg!r}")


def parse_overrides(argv: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """``(nested overrides, YAML file or None)``: the ``key=value`` arguments as one nested dict (no deletes)."""
    import os

    line = parse_command_line(argv)
    nested: dict[str, Any] = {}
    for op, key, value in line.overrides:
        if op in ("set", "add", "force"):
            _set(nested, key.split("."), value, key)
    yaml_file = None
    if line.config_name:
        name = line.config_name if line.config_name.endswith((".yaml", ".yml")) else line.config_name + ".yaml"
        yaml_file = os.path.join(line.config_path or ".", name)
    return nested, yaml_file


def _set(tree: dict, parts: list[str], value: Any, key: str) -> None:
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} was already given a value, it cannot also be a section")
        node = child
    node[parts[-1]] = value


def _apply(tree: dict, defaults: dict, line: CommandLine) -> dict:
    """The command line's overrides applied in order to ``tree`` (``defaults``: what ``~key`` returns to)."""
    from verl.utils.config_compose import FSDP_OPTIONS, check_group_option

    tree = copy.deepcopy(tree)
    for op, key, value in line.overrides:
        parts = key.split(".")
        if op == "group":
            check_group_option(key, value)
            continue
        known = _get(defaults, parts)
        if op == "set" and isinstance(value, str) and (isinstance(known, dict) or (
                known is _MISSING and len(parts) == 1 and key in FSDP_OPTIONS)):
            check_group_option(key, value)  # `optim=fsdp`: a group selection, not a value for a section
            continue
        if op == "set" and isinstance(known, dict) and known and not isinstance(value, dict):
            raise ConfigError(f"{key} is a section; set its keys ({key}.<name>=...), not {value!r}")
        if op == "delete":
            parent = _get(tree, parts[:-1])
            if not isinstance(parent, dict) or parts[-1] not in parent:
                raise ConfigError(f"~{key}: there is no such key to remove")
            default = _get(defaults, parts)
            if default is _MISSING:
                del parent[parts[-1]]
            else:
                parent[parts[-1]] = copy.deepcopy(default)
            continue
        _set(tree, parts, value, key)
    return tree


_MISSING = object()


def _get(tree: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _defaults_tree(cls: type) -> dict:
    """``to_dict(cls())`` with verl's derived defaults written as interpolations (``derived_defaults`` of ``cls``:
    ``{key: source key}``): a key the user does not set follows its source, as in verl's YAML."""
    tree = to_dict(cls())
    for key, source in getattr(cls, "derived_defaults", {}).items():
        _set(tree, key.split("."), "${" + source + "}", key)
    return tree


def load_cli_config(cls: type[T], argv: Sequence[str] = ()) -> T:
    """The typed config: ``cls`` defaults, then the composed YAML file (if any), then the command-line overrides."""
    return _load(cls, parse_command_line(argv))


def _load(cls: type[T], line: CommandLine) -> T:
    from verl.utils.config_compose import compose

    defaults = _defaults_tree(cls)
    merged = defaults
    if line.config_name:
        merged = _deep_merge(defaults, compose(line.config_path, line.config_name, getattr(cls, "config_names", ())))
    merged = _resolve_references(_apply(merged, defaults, line))
    if _has_interpolation(merged):
        merged = _resolve_interpolations(merged)
    return from_mapping(cls, merged)


def _has_interpolation(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_interpolation(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_interpolation(v) for v in value)
    return isinstance(value, str) and "${" in value


_REFERENCE = re.compile(r"^\$\{([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\}$")


def _resolve_references(tree: dict) -> dict:
    """Values that are exactly ``${a.b.c}`` (an absolute reference, what the derived defaults are) replaced by the
    referenced value, following chains; anything else with ``${`` is left for omegaconf. Resolving these here
    keeps a plain command line fast (omegaconf takes ~1 s over the whole tree)."""

    def lookup(path: str, depth: int) -> Any:
        value = _get(tree, path.split("."))
        if value is _MISSING:
            raise ConfigError(f"the config refers to ${{{path}}}, which is not a key")
        return resolve(value, depth + 1)

    def resolve(value: Any, depth: int = 0) -> Any:
        if depth > 50:
            raise ConfigError("the config's ${...} references form a cycle")
        if isinstance(value, dict):
            return {k: resolve(v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, depth) for v in value]
        match = _REFERENCE.match(value) if isinstance(value, str) else None
        return copy.deepcopy(lookup(match.group(1), depth)) if match else value

    return resolve(tree)


def _resolve_interpolations(merged: dict) -> dict:
    """``${a.b}``, ``${oc.select:a.b,default}``, ``${oc.env:VAR}`` resolved by omegaconf."""
    try:
        from omegaconf import OmegaConf
    except ImportError as err:
        raise ConfigError("a config value interpolates inside a string or uses a resolver (${...} that is not a "
                          "whole value); resolving it needs omegaconf: pip install omegaconf") from err
    from omegaconf.errors import OmegaConfBaseException

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
    derived = getattr(cls, "derived_defaults", {})
    section = None
    for key, default, doc in iter_fields(cls):
        top = key.split(".")[0] if "." in key else ""
        if top != section:
            section = top
            lines.append(f"\n[{top}]" if top else "")
        shown = f"${{{derived[key]}}}" if key in derived else repr(default)
        lines.append(f"  {key} = {shown}")
        if doc:
            lines.append(f"      {doc}")
    return "\n".join(lines)


def print_config_and_exit(config: Any) -> None:
    """What ``--cfg job`` does: the composed, checked config as YAML on stdout, then exit 0."""
    import yaml

    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    raise SystemExit(0)


def parse_cli_config(cls: type[T], argv: Sequence[str] | None, prog: str, description: str = "",
                     check: Callable[[T], Any] | None = None) -> T:
    """Build ``cls`` from the command line (``sys.argv[1:]`` when ``argv`` is None); ``-h``/``--help`` prints
    the keys and exits 0; ``--cfg job`` prints the config after ``check`` (if given) and exits 0."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(format_cli_help(cls, f"usage: {prog} [--config-path DIR --config-name NAME] [--cfg job] key=value ...",
                              description))
        raise SystemExit(0)
    line = parse_command_line(args)
    config = _load(cls, line)
    if line.cfg:
        if check is not None:
            check(config)
        print_config_and_exit(config)
    return config
