"""Tool calls in the model's text, Hermes style (what the Qwen2.5 / Qwen3 chat templates ask for)::

    some text <tool_call>
    {"name": "calc", "arguments": {"a": 1}}
    </tool_call>

A block that is not a JSON object with a string ``name`` and object (or JSON-string) ``arguments``, and an
opening tag never closed, become a :class:`ParsedCall` with ``error`` set: the loop answers it with a tool message
saying what was wrong, so the model sees its mistake instead of silence.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ParsedCall", "parse_hermes"]

_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass
class ParsedCall:
    """One call: ``name`` and ``arguments``, or ``error`` (why the block could not be used) and the raw text."""

    name: str | None
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    raw: str = ""


def _one(body: str) -> ParsedCall:
    raw = body.strip()
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        return ParsedCall(None, error=f"the tool call is not valid JSON ({err.msg} at char {err.pos})", raw=raw)
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return ParsedCall(None, error='the tool call must be a JSON object {"name": ..., "arguments": {...}}', raw=raw)
    args = obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return ParsedCall(obj["name"], error="the arguments string is not valid JSON", raw=raw)
    if not isinstance(args, dict):
        return ParsedCall(obj["name"], error="the arguments must be a JSON object", raw=raw)
    return ParsedCall(obj["name"], args, raw=raw)


def parse_hermes(text: str) -> tuple[str, list[ParsedCall]]:
    """``(text without the call blocks, calls in order)``; no tag at all gives ``(text, [])``."""
    calls = [_one(m.group(1)) for m in _BLOCK.finditer(text)]
    rest = _BLOCK.sub("", text)
    if OPEN in rest:
        tail = rest[rest.index(OPEN) + len(OPEN):]
        calls.append(ParsedCall(None, error=f"{OPEN} was opened but never closed with {CLOSE}", raw=tail.strip()))
        rest = rest[: rest.index(OPEN)]
    return rest.strip(), calls
