"""Multi-turn rollouts: the agent loop over any rollout engine (tools, interactions, token-in/token-out)."""

from verl.rollout.agent.loop import AGENT_LOOPS, AgentLoopRollout
from verl.rollout.agent.parser import ParsedCall, parse_hermes
from verl.rollout.agent.template import TemplateTokens
from verl.rollout.agent.trajectory import Trajectory, multi_turn_metrics

__all__ = ["AGENT_LOOPS", "AgentLoopRollout", "ParsedCall", "TemplateTokens", "Trajectory", "multi_turn_metrics",
           "parse_hermes"]
