"""``BaseInteraction``: verl's contract for a simulated user that answers the model between its turns.

- ``start_interaction(instance_id=None, **interaction_kwargs) -> instance_id`` when the trajectory starts
  (``interaction_kwargs`` is the sample's ``extra_info.interaction_kwargs``; its ``name`` picks the interaction);
- ``generate_response(instance_id, messages, **interaction_kwargs) -> (should_terminate, text, score, extra)``
  after each assistant turn without tool calls; ``text`` becomes the next user message unless
  ``should_terminate``; ``score`` is collected as the turn's score;
- ``calculate_score(...)`` and ``finalize_interaction(...)`` (at the end of the trajectory).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

__all__ = ["BaseInteraction"]


class BaseInteraction:
    def __init__(self, config: dict[str, Any]):
        self.config = dict(config or {})
        self.name: str = self.config.get("name", "interaction_agent")

    async def start_interaction(self, instance_id: str | None = None, **kwargs: Any) -> str:
        return instance_id or str(uuid4())

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]],
                                **kwargs: Any) -> tuple[bool, str, float, dict[str, Any]]:  # fmt: skip
        return False, "Your current result seems acceptable.", 0.0, {}

    async def calculate_score(self, *args: Any, **kwargs: Any) -> float:
        return 0.0

    async def finalize_interaction(self, *args: Any, **kwargs: Any) -> None:
        return None
