"""A calculator tool written from scratch against verl's tool contract (docs/advance/multiturn.md walks through it).

The model calls ``calc`` with an arithmetic expression (``{"expr": "47 + 38"}``); the tool evaluates it safely
(numbers, + - * / and parentheses only, through Python's ``ast``; no ``eval``) and answers with the value. It keeps
no state per trajectory, so ``create`` / ``release`` are the base class's; it counts the calls that succeeded,
which ``calc_reward`` returns (it reaches the reward function as ``rollout_reward_scores["calc"]``).
"""

from __future__ import annotations

import ast
import operator
from typing import Any

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def evaluate(expr: str) -> float:
    """The value of an arithmetic expression; ``ValueError`` for anything else."""
    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.operand))
        raise ValueError(f"not arithmetic: {ast.unparse(node)!r}")

    if len(expr) > 200:
        raise ValueError("expression too long")
    return walk(ast.parse(expr, mode="eval"))


class CalculatorTool(BaseTool):
    """``calc(expr)``: evaluates an arithmetic expression."""

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None):
        super().__init__(config, tool_schema)
        self.successes: dict[str, int] = {}

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        instance_id, response = await super().create(instance_id)
        self.successes[instance_id] = 0
        return instance_id, response

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[ToolResponse, float, dict]:
        try:
            value = evaluate(str(parameters.get("expr", "")))
        except (ValueError, SyntaxError, ZeroDivisionError) as err:
            return ToolResponse(text=f"error: {err}"), 0.0, {"ok": False}
        self.successes[instance_id] += 1
        text = str(int(value)) if float(value).is_integer() else f"{value:.6g}"
        return ToolResponse(text=text), 0.0, {"ok": True}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        return float(self.successes[instance_id])

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self.successes.pop(instance_id, None)
