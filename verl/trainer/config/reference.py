"""The config reference page (``docs/examples/config.md``), generated from the schema's field docstrings.

The page is a hand-written introduction, a marker line, then one table per config section (every key, its
default as it would be written in YAML or on the command line, and its meaning). Regenerating keeps
everything above the marker and rewrites everything below it, so the page cannot drift from the schema:

    python -m verl.trainer.config --markdown docs/examples/config.md   # rewrite the page in place
    python -m verl.trainer.config --markdown                           # print the generated part
"""

from __future__ import annotations

import re
from typing import Any

from verl.trainer.config.schema import PPOConfig
from verl.utils.config import ConfigError, field_docs, iter_fields

__all__ = ["MARKER", "generated_markdown", "render_page"]

MARKER = ("<!-- Generated below this line by `python -m verl.trainer.config --markdown docs/examples/config.md` "
          "from the field docstrings of verl/trainer/config/schema.py and the sections it composes; "
          "edit those docstrings, not the tables. -->")

_RST_ROLE = re.compile(r":\w+:`([^`]+)`")  # :class:`RLHFDataset` -> `RLHFDataset`


def _markdown_text(doc: str) -> str:
    """A docstring as one table cell: RST literals become Markdown code, pipes are escaped."""
    text = _RST_ROLE.sub(r"`\1`", doc).replace("``", "`")
    return text.replace("|", "\\|")


def _yaml_value(value: Any) -> str:
    """A default as a user writes it in YAML or as ``key=value`` (``null``, ``true``, ``[console]``)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def _section_doc(dotted: str) -> str:
    """The docstring of the field that holds section ``dotted`` (e.g. ``actor_rollout_ref.actor.optim``)."""
    obj: Any = PPOConfig()
    doc = ""
    for name in dotted.split("."):
        doc = field_docs(type(obj)).get(name, "")
        obj = getattr(obj, name)
    return doc


def _status(key: str) -> str:
    """The key's status in one phrase, after its meaning: refused values, or why any value behaves the same."""
    from verl.trainer.config.compat import fixed_rule, same_either_way_reason

    rule = fixed_rule(key)
    if rule is not None:
        accepted = ", ".join(f"`{_yaml_value(a)}`" for a in rule[0])
        return f" **Accepted: {accepted} only** ({_markdown_text(rule[1])})."
    reason = same_either_way_reason(key)
    if reason is not None:
        return f" **Any value behaves the same here**: {_markdown_text(reason)}."
    return ""


def generated_markdown() -> str:
    """Every key of :class:`PPOConfig` in one table per section, in declaration order."""
    sections: dict[str, list[tuple[str, Any, str]]] = {}
    for key, default, doc in iter_fields(PPOConfig):
        section = key.rsplit(".", 1)[0]
        sections.setdefault(section, []).append((key, default, doc))
    lines: list[str] = []
    for section, rows in sections.items():
        level = "##" if "." not in section else "###"
        lines += [f"{level} `{section}`", ""]
        doc = _section_doc(section)
        if doc:
            lines += [_markdown_text(doc), ""]
        lines += ["| key | default | meaning |", "| --- | --- | --- |"]
        for key, default, field_doc in rows:
            source = PPOConfig.derived_defaults.get(key)
            default_text = ("${" + source + "}") if source else _yaml_value(default).replace("|", "\\|")
            lines.append(f"| `{key}` | `{default_text}` | {_markdown_text(field_doc)}{_status(key)} |")
        lines.append("")
    return "\n".join(lines)


def render_page(current: str) -> str:
    """``current`` with everything below :data:`MARKER` regenerated (the introduction above it is kept)."""
    intro, found, _ = current.partition(MARKER)
    if not found:
        raise ConfigError(f"the page has no generator marker line; put this line under its introduction:\n{MARKER}")
    return f"{intro}{MARKER}\n\n{generated_markdown()}"
