"""Tools a model can call during multi-turn rollouts: verl's :class:`BaseTool` contract, its schemas, built-ins
(:mod:`~verl.tools.gsm8k_tool`, :mod:`~verl.tools.python_tool`) and the YAML loader."""

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

__all__ = ["BaseTool", "OpenAIFunctionToolSchema", "ToolResponse"]
