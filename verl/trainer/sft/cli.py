"""Command lines of the form ``python -m verl.trainer.<entry> a.b=c x.y=[1,2] ...`` turned into a typed config.

Values are parsed by omegaconf's dotlist rules (``1e-4`` is a float, ``[a,b]`` a list, ``null`` None), merged
over the dataclass defaults (so ``${trainer.project_name}`` interpolations may refer to any key), then
validated by :func:`verl.utils.config.from_mapping`: an unknown key or a wrong type stops the program with a
message naming the key. Hydra's ``+key=value`` (add a key) is accepted as ``key=value``. ``--help`` prints
every key with its default and its field docstring.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TypeVar

from verl.utils.config import ConfigError, from_mapping, iter_fields, to_dict

__all__ = ["format_help", "parse_cli_config"]

T = TypeVar("T")


def format_help(cls: type, prog: str, description: str = "") -> str:
    """Usage line, description and one ``key=default  doc`` entry per leaf field of ``cls``."""
    lines = [f"usage: {prog} [key=value ...]", ""]
    if description:
        lines += [description.strip(), ""]
    for key, default, doc in iter_fields(cls):
        lines.append(f"  {key}={default!r}")
        if doc:
            lines.append(f"      {doc}")
    return "\n".join(lines)


def parse_cli_config(cls: type[T], argv: Sequence[str] | None, prog: str, description: str = "") -> T:
    """Build ``cls`` from ``key=value`` arguments (``sys.argv[1:]`` when ``argv`` is None).

    Prints help and exits 0 on ``-h``/``--help``. Raises :class:`ConfigError` for an argument that is not
    ``key=value``, an unknown key (with a close-match suggestion) or a value of the wrong type.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(format_help(cls, prog, description))
        raise SystemExit(0)
    dotlist = []
    for arg in args:
        if arg.startswith("~"):
            raise ConfigError(f"{arg!r}: deleting keys is not supported; set the key to null instead")
        if "=" not in arg or arg.startswith("="):
            raise ConfigError(f"{arg!r} is not a key=value override (e.g. trainer.total_epochs=2); see {prog} --help")
        dotlist.append(arg[2:] if arg.startswith("++") else arg[1:] if arg.startswith("+") else arg)
    try:
        merged = OmegaConf.merge(OmegaConf.create(to_dict(cls())), OmegaConf.from_dotlist(dotlist))
        values = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse the overrides {dotlist}: {err}") from err
    return from_mapping(cls, values)
