"""Tools from a tool YAML, as verl writes it::

    tools:
      - class_name: verl.tools.gsm8k_tool.Gsm8kTool     # any importable BaseTool subclass
        config: {type: native}                          # handed to the tool; `timeout` (s) limits each call
        tool_schema: {type: function, function: {name: ..., description: ..., parameters: {...}}}
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema

__all__ = ["get_tool_class", "initialize_tools_from_config", "load_tool_config"]


def get_tool_class(class_name: str) -> type:
    """The class at dotted path ``class_name`` (``package.module.Class``)."""
    module_name, _, attr = class_name.rpartition(".")
    if not module_name:
        raise ValueError(f"tool class_name {class_name!r} must be a dotted path, e.g. verl.tools.gsm8k_tool.Gsm8kTool")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"tool class_name {class_name!r}: cannot import {module_name!r} ({err})") from err
    if not hasattr(module, attr):
        raise ImportError(f"tool class_name {class_name!r}: {module_name} has no {attr!r}")
    return getattr(module, attr)


def load_tool_config(path: str) -> list[dict[str, Any]]:
    """The ``tools`` list of a tool YAML, each entry checked for ``class_name`` (``ValueError`` naming the entry)."""
    import yaml

    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"actor_rollout_ref.rollout.multi_turn.tool_config_path={path!r} does not exist")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    entries = raw.get("tools") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level 'tools:' list of {{class_name, config, tool_schema}}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise ValueError(f"{path}: tools[{i}] needs a string class_name, got {entry!r:.200}")
        kind = (entry.get("config") or {}).get("type", "native")
        if kind != "native":
            raise ValueError(f"{path}: tools[{i}] config.type={kind!r}: only native (in-process Python) tools are "
                             "supported; MCP servers are not")
    return entries


def initialize_tools_from_config(tools_config_file: str) -> list[BaseTool]:
    """Instantiate every tool of the YAML (``class_name(config=..., tool_schema=...)``); names must be unique."""
    tools: list[BaseTool] = []
    for i, entry in enumerate(load_tool_config(tools_config_file)):
        cls = get_tool_class(entry["class_name"])
        schema = entry.get("tool_schema")
        try:
            parsed = OpenAIFunctionToolSchema.model_validate(schema) if schema is not None else None
        except Exception as err:
            raise ValueError(f"{tools_config_file}: tools[{i}].tool_schema is not an OpenAI function schema: {err}") from err
        tools.append(cls(config=dict(entry.get("config") or {}), tool_schema=parsed))
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{tools_config_file}: tool name(s) {duplicates} appear more than once")
    return tools
