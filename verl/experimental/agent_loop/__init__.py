"""verl's ``verl.experimental.agent_loop`` path: the agent loop lives in :mod:`verl.rollout.agent`."""

from verl.rollout.agent import AGENT_LOOPS, AgentLoopRollout, multi_turn_metrics, parse_hermes

__all__ = ["AGENT_LOOPS", "AgentLoopRollout", "multi_turn_metrics", "parse_hermes"]
