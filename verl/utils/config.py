"""Typed configs: nested dataclasses built from plain mappings, with errors that name the key and the fix.

Dataclasses are the schema and hold the defaults. :func:`from_mapping` builds one from a dict (or an omegaconf
mapping) of overrides: an unknown key fails with a close-match suggestion, a value of the wrong type fails
naming the full dotted key. :func:`field_docs` reads the docstring written under each field, which the CLI's
``--help`` and the generated config reference print.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["ConfigError", "from_mapping", "to_dict", "field_docs", "iter_fields", "omega_conf_to_dataclass", "plain_mapping"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem found before anything starts; the message names the key and the fix."""


def plain_mapping(mapping: Any) -> dict[str, Any]:
    """A plain dict from a dict or an omegaconf mapping (resolved)."""
    if type(mapping).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(mapping, resolve=True)  # type: ignore[return-value]
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"expected a mapping of config keys, got {type(mapping).__name__}")
    return dict(mapping)


def unknown_key_error(where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {where}{close[0]}?" if close else f"; known keys here: {sorted(known)}"
    return ConfigError(f"unknown config key {where}{key}{hint}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints accepted for floats, dicts for dataclasses)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None or isinstance(value, Mapping) or type(value).__module__.startswith("omegaconf"):
            return from_mapping(tp, value or {}, prefix=f"{key}.")
        raise ConfigError(f"{key} is a section; set its keys ({key}.<name>=...), not {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            if origin is list and isinstance(value, str):
                return [value]  # `logger=console` means a one-element list, as in verl
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return origin(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def from_mapping(cls: type[T], mapping: Any, prefix: str = "", base: T | None = None) -> T:
    """Build dataclass ``cls`` from ``mapping`` over ``base`` (default: ``cls()``): keys not given keep the
    base's values (nested sections merge key by key), unknown keys are errors naming the closest key.

    Fields typed ``dict`` take any keys (verl's free-form ``+key=value`` entries such as
    ``model.override_config``).
    """
    if isinstance(mapping, cls) and base is None:
        return mapping
    values = plain_mapping(mapping)
    base = cls() if base is None else base
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_key_error(prefix, key, list(fields))
        current = getattr(base, key)
        if dataclasses.is_dataclass(current) and (isinstance(value, Mapping) or type(value).__module__.startswith("omegaconf")):
            kwargs[key] = from_mapping(type(current), value, prefix=f"{prefix}{key}.", base=current)
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return dataclasses.replace(base, **kwargs)
    except (ValueError, TypeError) as exc:  # a section's own __post_init__ check
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """A plain, YAML-friendly dict of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for the string literals written right under each field of ``cls``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def iter_fields(obj_or_cls: Any, prefix: str = ""):
    """Yield ``(dotted key, default value, doc)`` for every leaf field of a (nested) dataclass."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    obj = obj_or_cls if not isinstance(obj_or_cls, type) else cls()
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, prefix=f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, docs.get(f.name, "")


def omega_conf_to_dataclass(config: Any, dataclass_type: type[T] | None = None) -> T | Any:
    """verl's converter: a mapping (``DictConfig`` or ``dict``) as an instance of ``dataclass_type``, or of the
    class named by its ``_target_`` key (``"package.module.Class"``) when no type is given.

    A dataclass instance is returned as it is; a mapping with neither a type nor ``_target_`` comes back as a
    plain dict. Keys are checked as in :func:`from_mapping` (an unknown key raises :class:`ConfigError`).
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return config
    values = plain_mapping(config)
    target = values.pop("_target_", None)
    if dataclass_type is None:
        if not target:
            return values
        module_name, _, class_name = str(target).rpartition(".")
        import importlib

        dataclass_type = getattr(importlib.import_module(module_name), class_name)
    if "_target_" in {f.name for f in dataclasses.fields(dataclass_type)} and target:
        values["_target_"] = target
    return from_mapping(dataclass_type, values)
