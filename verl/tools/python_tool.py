"""``PythonTool``: run the model's Python program in this library's sandbox and return what it printed.

The program runs in a subprocess with the limits of :mod:`verl.utils.reward_score.sandbox` (wall clock, CPU time,
memory, output size, no network). The tool YAML's ``config`` may set ``timeout_s``, ``memory_mb`` and
``output_mb`` (the sandbox limits); the subprocess runs in a thread, so other calls proceed meanwhile.

Tool schema to pair with it (the argument name is read from ``config.code_key``, default ``code``)::

    tool_schema:
      type: function
      function:
        name: python
        description: Run a Python program and return its standard output.
        parameters:
          type: object
          properties: {code: {type: string, description: the program}}
          required: [code]
"""

from __future__ import annotations

import asyncio
from typing import Any

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

__all__ = ["PythonTool"]

_LIMIT_KEYS = ("timeout_s", "memory_mb", "output_mb")


class PythonTool(BaseTool):
    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None):
        super().__init__(config, tool_schema)
        from verl.utils.reward_score.sandbox import SandboxLimits

        self.code_key = str(self.config.get("code_key", "code"))
        self.limits = SandboxLimits(**{k: self.config[k] for k in _LIMIT_KEYS if k in self.config})

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[ToolResponse, float, dict]:
        from verl.utils.reward_score.sandbox import run_python

        code = parameters.get(self.code_key)
        if not isinstance(code, str) or not code.strip():
            return ToolResponse(text=f"Error: pass the program as the string argument {self.code_key!r}"), 0.0, {
                "status": "bad_arguments"}
        result = await asyncio.to_thread(run_python, code, "", self.limits)
        if result.status == "ok":
            text = result.stdout if result.stdout else "(no output)"
        else:
            text = f"{result.stdout}\n[{result.status}] {result.stderr.strip()[-500:]}".strip()
        return ToolResponse(text=text), 0.0, {"status": result.status, "wall_s": result.wall_s}
