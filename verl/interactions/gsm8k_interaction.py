"""``Gsm8kInteraction``: a user who checks the model's last answer and asks it to try again when it is wrong
(verl's demo interaction, same semantics: ``strict`` GSM8K extraction, the trajectory ends at a correct answer).

The ground truth is ``extra_info.interaction_kwargs.ground_truth`` of the sample.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.interactions.base import BaseInteraction
from verl.utils.reward_score import gsm8k

__all__ = ["Gsm8kInteraction"]

CORRECT = "Your response is correct!"
INCORRECT = "Your response is incorrect! You need to reflect on your answer and try again."


class Gsm8kInteraction(BaseInteraction):
    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self._state: dict[str, dict[str, Any]] = {}

    async def start_interaction(self, instance_id: str | None = None, ground_truth: str | None = None,
                                **kwargs: Any) -> str:  # fmt: skip
        instance_id = instance_id or str(uuid4())
        self._state[instance_id] = {"response": "", "ground_truth": ground_truth, "reward": 0.0}
        return instance_id

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]],
                                **kwargs: Any) -> tuple[bool, str, float, dict[str, Any]]:  # fmt: skip
        last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "assistant"), "")
        self._state[instance_id]["response"] = last
        reward = await self.calculate_score(instance_id)
        return (True, CORRECT, reward, {}) if reward == 1.0 else (False, INCORRECT, reward, {})

    async def calculate_score(self, instance_id: str, **kwargs: Any) -> float:
        state = self._state[instance_id]
        if state["ground_truth"] is None:
            return 0.0
        return float(gsm8k.compute_score(state["response"], str(state["ground_truth"]), method="strict",
                                         format_score=0.0, score=1.0))

    async def finalize_interaction(self, instance_id: str, **kwargs: Any) -> None:
        self._state.pop(instance_id, None)
