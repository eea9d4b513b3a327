"""``Gsm8kTool``: the model submits its GSM8K answer and is told how it scores (verl's demo tool, same semantics).

Each submission is scored with the GSM8K rule (``flexible`` extraction of the last number, 1.0 if it equals the
sample's ground truth); the step reward is 0 when the score improved over the previous submission of the
trajectory and -0.05 otherwise, and ``calc_reward`` is the score of the last submission. The ground truth comes
from the sample's ``extra_info.tools_kwargs.calc_gsm8k_reward.create_kwargs.ground_truth``.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse
from verl.utils.reward_score import gsm8k

__all__ = ["Gsm8kTool"]


class Gsm8kTool(BaseTool):
    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None):
        super().__init__(config, tool_schema)
        self._state: dict[str, dict[str, Any]] = {}

    async def create(self, instance_id: str | None = None, ground_truth: str | None = None,
                     **kwargs: Any) -> tuple[str, ToolResponse]:  # fmt: skip
        instance_id = instance_id or str(uuid4())
        if ground_truth is None:
            ground_truth = (kwargs.get("create_kwargs") or {}).get("ground_truth")
        self._state[instance_id] = {"response": "", "ground_truth": ground_truth, "reward": 0.0}
        return instance_id, ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[ToolResponse, float, dict]:
        answer = parameters.get("answer", "")
        answer = answer if isinstance(answer, str) else str(answer)
        state = self._state[instance_id]
        state["response"] = answer if answer.startswith("#### ") else "#### " + answer
        reward = await self.calc_reward(instance_id)
        step_reward = 0.0 if reward > state["reward"] else -0.05
        state["reward"] = reward
        return ToolResponse(text=f"Current parsed answer={answer!r} reward={reward}"), step_reward, {}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        state = self._state[instance_id]
        if state["ground_truth"] is None:
            return 0.0
        return float(gsm8k.compute_score(state["response"], str(state["ground_truth"]), method="flexible",
                                         format_score=0.0, score=1.0))

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._state.pop(instance_id, None)
