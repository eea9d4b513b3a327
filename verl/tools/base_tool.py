"""``BaseTool``: verl's contract for a tool the model can call during a multi-turn rollout.

One tool object serves every trajectory of a rollout; per-trajectory state lives under an instance id:

- ``create(instance_id=None, **kwargs) -> (instance_id, ToolResponse)``: at the trajectory's first call of this
  tool; ``kwargs["create_kwargs"]`` is the sample's ``extra_info.tools_kwargs[<tool name>].create_kwargs``
  (e.g. the ground truth);
- ``execute(instance_id, parameters, **kwargs) -> (ToolResponse, step_reward, metrics)``: one call, with the
  arguments the model wrote (a dict);
- ``calc_reward(instance_id, **kwargs) -> float``: at the end of the trajectory; it reaches the reward function
  as ``extra_info["rollout_reward_scores"][<tool name>]``;
- ``release(instance_id, **kwargs)``: at the end of the trajectory.

All four are coroutines. The rollout runs the calls of all trajectories concurrently on one event loop with a
time limit each, so a tool that does blocking work (a subprocess, a long computation) should do it in
``await asyncio.to_thread(...)``: blocking code in the coroutine itself stalls the other calls and cannot be
interrupted by the time limit.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

__all__ = ["BaseTool"]


class BaseTool:
    """A tool: its OpenAI function schema plus the four coroutines above (the defaults do nothing).

    Args:
        config: the ``config`` mapping of the tool's entry in the tool YAML.
        tool_schema: the parsed ``tool_schema`` of that entry (``None``: :meth:`get_openai_tool_schema` must
            provide it).
    """

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None):
        self.config = dict(config or {})
        self.tool_schema = tool_schema or self.get_openai_tool_schema()
        if self.tool_schema is None:
            raise ValueError(f"{type(self).__name__}: no tool_schema in the tool config and none from "
                             "get_openai_tool_schema()")
        self.name = self.tool_schema.function.name

    def get_openai_tool_schema(self) -> OpenAIFunctionToolSchema | None:
        return getattr(self, "tool_schema", None)

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        return (instance_id or str(uuid4())), ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[ToolResponse, float, dict]:
        return ToolResponse(text="Updated the tool state."), 0.0, {}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        return 0.0

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        return None
