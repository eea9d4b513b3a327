"""A calculator tool written from scratch against verl's tool contract, for the multi-turn example.

``calculate`` evaluates an arithmetic expression safely (numbers, + - * / and parentheses only, through Python's
``ast``; no ``eval``) and answers with the value. The expression is the call's ``expr`` argument when the model gives
one, else the problem's own, handed to the tool per sample as ``extra_info.tools_kwargs.calculate.create_kwargs
.expression`` (as verl's GSM8K tool is handed the ground truth): the example's model only has to decide to call
``calculate()``. It counts the calls that succeeded, which ``calc_reward`` returns (it reaches the reward function
as ``rollout_reward_scores["calculate"]``).
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
    """``calculate(expr=<the problem's expression>)``: evaluates an arithmetic expression."""

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None):
        super().__init__(config, tool_schema)
        self.successes: dict[str, int] = {}
        self.expressions: dict[str, str] = {}

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        instance_id, response = await super().create(instance_id)
        self.successes[instance_id] = 0
        self.expressions[instance_id] = str((kwargs.get("create_kwargs") or {}).get("expression", ""))
        return instance_id, response

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[ToolResponse, float, dict]:
        expr = parameters.get("expr") or self.expressions[instance_id]
        try:
            if not expr:
                raise ValueError("no expression: pass expr")
            value = evaluate(str(expr))
        except (ValueError, SyntaxError, ZeroDivisionError) as err:
            return ToolResponse(text=f"error: {err}"), 0.0, {"ok": False}
        self.successes[instance_id] += 1
        text = str(int(value)) if float(value).is_integer() else f"{value:.6g}"
        return ToolResponse(text=text), 0.0, {"ok": True}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        return float(self.successes[instance_id])

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self.successes.pop(instance_id, None)
        self.expressions.pop(instance_id, None)
