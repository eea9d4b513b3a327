"""``BaseConfig``: verl's base class for typed configs, a dataclass that also reads like a mapping.

Subclasses are ``@dataclass``es. ``cfg.get("key", default)``, ``cfg["key"]``, ``"key" in cfg``, ``len(cfg)``
and iteration over field names work as on the ``DictConfig`` verl code was written against. A field cannot
be reassigned once set unless its name is in the class's ``_mutable_fields`` (as in verl).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass, fields
from typing import Any, ClassVar

__all__ = ["BaseConfig"]


@dataclass
class BaseConfig(Mapping):
    """A dataclass config with a read-only mapping interface over its fields."""

    _mutable_fields: ClassVar[set[str]] = set()
    _target_: str = ""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__ and name not in type(self)._mutable_fields:
            raise FrozenInstanceError(f"field {name!r} of {type(self).__name__} is frozen; add it to _mutable_fields")
        super().__setattr__(name, value)

    def get(self, key: str, default: Any = None) -> Any:
        """The field ``key``, or ``default`` when there is none."""
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self))

    def __len__(self) -> int:
        return len(fields(self))
