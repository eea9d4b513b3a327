"""Hydra-style composition of a YAML config file and its ``defaults:`` list (what ``--config-name`` reads).

verl's entry points are Hydra apps whose configs are composed from groups (``actor@actor_rollout_ref.actor:
dp_actor``, ``optim: fsdp``, ...). Here the schema dataclasses hold every default, so composing is simpler:

- verl's shipped config names (``ppo_trainer``, ``sft_trainer``, ``generation``, ``evaluation``) mean this
  library's built-in defaults, wherever they are referenced: ``--config-name ppo_trainer``, a user's file whose
  ``defaults:`` list starts with ``- ppo_trainer``, or a ``--config-path`` pointing at verl's own config folder;
- verl's FSDP group options (``dp_actor``, ``fsdp``, ``hf_model``, ...) are the built-in defaults too, its
  Megatron options are refused with the reason;
- a user's own files are read: ``_self_`` places the file's own keys, ``name`` merges ``name.yaml`` from the
  same folder, ``group@package: option`` merges ``group/option.yaml`` under ``package``. ``_target_`` keys
  (Hydra's instantiation hints) and the ``hydra:`` section (Hydra's own settings) are dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from verl.utils.config import ConfigError

__all__ = ["VERL_CONFIG_NAMES", "check_group_option", "compose"]

VERL_CONFIG_NAMES = ("ppo_trainer", "sft_trainer", "sft_trainer_engine", "generation", "evaluation")
_MEGATRON = ("Megatron-LM engines are not supported here: this library trains with PyTorch FSDP2; use verl's FSDP "
             "config instead (--config-name ppo_trainer, or drop --config-name) and FSDP keys "
             "(actor_rollout_ref.actor.fsdp_config.*); verl's *.megatron.* keys are keys of that config "
             "(megatron.tensor_model_parallel_size runs torch-native tensor parallelism x FSDP2)")
REFUSED_CONFIGS = {"ppo_megatron_trainer": _MEGATRON, "sft_trainer_megatron": _MEGATRON}
#: verl's group options that are this library's built-in defaults (FSDP workers), by group name.
FSDP_OPTIONS = {
    "actor": ("dp_actor", "actor"), "critic": ("dp_critic", "critic"), "ref": ("dp_ref", "ref"),
    "rollout": ("rollout",), "data": ("legacy_data",), "model": ("hf_model",), "optim": ("fsdp",),
    "engine": ("fsdp",), "reward_model": ("dp_reward_model", "dp_reward_loop", "reward_model"),
    "algorithm": ("rollout_correction",), "profiler": ("profiler",), "npu_profile": ("npu_profile",),
    "reward_manager": ("reward_manager",),
}


def check_group_option(key: str, option: Any) -> None:
    """Accept ``group[@package]=option`` naming verl's FSDP option of a group; refuse Megatron's and unknown ones."""
    group = key.split("@")[0].strip("/").split("/")[-1].split(".")[-1]
    text = str(option).strip("'\"")
    if "megatron" in text or text == "veomni":
        raise ConfigError(f"{key}={text}: {_MEGATRON}")
    options = FSDP_OPTIONS.get(group)
    if options is None or text not in options:
        hint = f"use one of {list(options)}" if options else f"known groups: {sorted(FSDP_OPTIONS)}"
        raise ConfigError(f"{key}={text}: not a config group option known here ({hint}); to set keys of a "
                          f"section write {key}.<name>=value")


def _strip_targets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_targets(v) for k, v in value.items() if k != "_target_"}
    if isinstance(value, list):
        return [_strip_targets(v) for v in value]
    return value


def _is_builtin_dir(directory: Path) -> bool:
    """verl's own config folder (a checkout) or this package's: its names mean the built-in defaults."""
    here = Path(__file__).resolve().parents[1] / "trainer" / "config"
    return (directory / "_generated_ppo_trainer.yaml").is_file() or directory.resolve() == here


def _resolve_dir(config_path: str | None) -> Path:
    """``--config-path``: absolute, relative to the working directory, or (as Hydra reads it) relative to the
    entry point's package ``verl/trainer``."""
    path = Path(os.path.expanduser(config_path or "."))
    if path.is_absolute() or path.is_dir():
        return path
    beside_entry = Path(__file__).resolve().parents[1] / "trainer" / path
    return beside_entry if beside_entry.is_dir() else path


def _yaml_name(name: str) -> str:
    return name if name.endswith((".yaml", ".yml")) else name + ".yaml"


def compose(config_path: str | None, config_name: str, shipped: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys ``--config-path/--config-name`` give, to merge over the built-in defaults (``shipped``: the
    config names of this entry point, which mean the built-in defaults)."""
    name = config_name.strip("'\"").removesuffix(".yaml").removesuffix(".yml")
    if name in REFUSED_CONFIGS:
        raise ConfigError(f"--config-name {name}: {REFUSED_CONFIGS[name]}")
    directory = _resolve_dir(config_path)
    file = directory / _yaml_name(name)
    if name in VERL_CONFIG_NAMES and (not file.is_file() or _is_builtin_dir(directory)):
        return _builtin(name, shipped)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist (from --config-path/--config-name)")
    return _compose_file(file, shipped, seen=())


def _builtin(name: str, shipped: tuple[str, ...]) -> dict[str, Any]:
    if shipped and name not in shipped:
        raise ConfigError(f"config {name!r} is verl's config of another entry point; this one's is {shipped[0]!r}")
    return {}


def _place(tree: dict[str, Any], package: str) -> dict[str, Any]:
    for part in reversed([p for p in package.split(".") if p and p not in ("_global_", "_here_")]):
        tree = {part: tree}
    return tree


def _compose_file(file: Path, shipped: tuple[str, ...], seen: tuple[Path, ...]) -> dict[str, Any]:
    import yaml

    from verl.utils.cli import _deep_merge

    if file.resolve() in seen:
        raise ConfigError(f"{file}: its defaults list includes itself")
    with open(file) as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict):
        raise ConfigError(f"{file} must hold a mapping of config sections")
    content.pop("hydra", None)  # Hydra's own settings (searchpath, run dir): not part of the config
    defaults = content.pop("defaults", None) or []
    content = _strip_targets(content)
    if not isinstance(defaults, list):
        raise ConfigError(f"{file}: `defaults` must be a list")
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    out: dict[str, Any] = {}
    for entry in defaults:
        part = content if entry == "_self_" else _default_entry(file, entry, shipped, (*seen, file.resolve()))
        out = _deep_merge(out, part)
    return out


def _default_entry(file: Path, entry: Any, shipped: tuple[str, ...], seen: tuple[Path, ...]) -> dict[str, Any]:
    directory = file.parent
    if isinstance(entry, str):
        name = entry.removeprefix("optional ").strip().removesuffix(".yaml")
        target = directory / _yaml_name(name)
        if name in VERL_CONFIG_NAMES and (not target.is_file() or _is_builtin_dir(directory)):
            return _builtin(name, shipped)
        if name in REFUSED_CONFIGS:
            raise ConfigError(f"{file}: defaults entry {name}: {REFUSED_CONFIGS[name]}")
        if not target.is_file():
            raise ConfigError(f"{file}: defaults entry {name!r}: no file {target}")
        return _compose_file(target, shipped, seen)
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(f"{file}: defaults entry {entry!r}: use `- name`, `- group: option` or `- _self_`")
    (key, option), = entry.items()
    key = str(key).removeprefix("override ").removeprefix("optional ").strip()
    if option is None:
        return {}
    group, _, package = key.partition("@")
    base = file.parent if not group.startswith("/") else directory
    target = base / group.lstrip("/") / _yaml_name(str(option))
    if target.is_file() and not _is_builtin_dir(target.parent.parent):
        return _place(_compose_file(target, shipped, seen), package or group.strip("/").replace("/", "."))
    check_group_option(key, option)
    return {}
