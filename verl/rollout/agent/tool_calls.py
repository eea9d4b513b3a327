"""Running one model turn's tool calls: concurrently, each under a time limit; every failure becomes a tool message.

Failures (counted per trajectory by kind): ``bad_call`` (not JSON, no name, arguments not an object),
``unknown_tool``, ``create_failed``, ``error`` (the tool raised, or returned something unusable), ``timeout``,
``over_limit`` (more calls in one turn than ``max_parallel_calls``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from verl.rollout.agent.parser import ParsedCall
from verl.rollout.agent.trajectory import Trajectory
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import ToolResponse

__all__ = ["DEFAULT_TOOL_TIMEOUT_S", "run_tool_calls", "truncate_text"]

logger = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT_S = 30.0
"""Time limit of one call when the tool's YAML ``config`` sets no ``timeout`` (seconds)."""


def truncate_text(text: str, limit: int, side: str) -> str:
    """verl's tool-response truncation to ``limit`` characters: ``left`` keeps the start, ``right`` the end,
    ``middle`` both ends."""
    if len(text) <= limit:
        return text
    if side == "left":
        return text[:limit] + "...(truncated)"
    if side == "right":
        return "(truncated)..." + text[-limit:]
    half = limit // 2
    return text[:half] + "...(truncated)..." + text[len(text) - half:]


def _kwargs(traj: Trajectory, tool: str, phase: str) -> dict[str, Any]:
    per_tool = traj.tools_kwargs.get(tool) if isinstance(traj.tools_kwargs, Mapping) else None
    value = (per_tool or {}).get(phase) if isinstance(per_tool, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


async def _ensure_instance(traj: Trajectory, tool: BaseTool) -> str | None:
    if tool.name not in traj.tool_instances:
        try:
            instance, _ = await tool.create(create_kwargs=_kwargs(traj, tool.name, "create_kwargs"))
        except Exception as err:  # a broken tool must not crash the step
            logger.warning("tool %r: create failed: %s: %s", tool.name, type(err).__name__, err)
            return None
        traj.tool_instances[tool.name] = instance
    return traj.tool_instances[tool.name]


def _as_response(value: Any) -> ToolResponse:
    """Accept verl's ToolResponse, a plain string or a dict of ToolResponse fields (older verl tools)."""
    if isinstance(value, ToolResponse):
        return value
    if isinstance(value, str):
        return ToolResponse(text=value)
    if isinstance(value, Mapping):
        return ToolResponse(**value)
    raise TypeError(f"execute() returned {type(value).__name__} as the response; return a ToolResponse")


async def _call(traj: Trajectory, call: ParsedCall, tools: Mapping[str, BaseTool]) -> tuple[str, str | None]:
    """``(tool message text, failure kind or None)``."""
    if call.error is not None:
        return f"Error: {call.error}. Write <tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call>.", "bad_call"
    tool = tools.get(call.name or "")
    if tool is None:
        return f"Error: there is no tool named {call.name!r}; available tools: {sorted(tools)}.", "unknown_tool"
    instance = await _ensure_instance(traj, tool)
    if instance is None:
        return f"Error: the tool {tool.name!r} could not be started.", "create_failed"
    timeout = float(tool.config.get("timeout", DEFAULT_TOOL_TIMEOUT_S))
    try:
        result = await asyncio.wait_for(
            tool.execute(instance, call.arguments, **_kwargs(traj, tool.name, "execute_kwargs")), timeout)
        response, reward, _metrics = result
        response = _as_response(response)
    except asyncio.TimeoutError:
        return f"Error: the tool {tool.name!r} did not finish within {timeout:g} s.", "timeout"
    except Exception as err:
        logger.info("tool %r raised %s: %s", tool.name, type(err).__name__, err)
        return f"Error: the tool {tool.name!r} failed: {type(err).__name__}: {err}", "error"
    if response.image or response.video:
        return f"Error: the tool {tool.name!r} returned images/videos; only text responses are supported.", "error"
    if reward is not None:
        traj.tool_rewards.append(float(reward))
    return response.text or "", None


async def run_tool_calls(traj: Trajectory, calls: list[ParsedCall], tools: Mapping[str, BaseTool],
                         max_parallel_calls: int, max_length: int, truncate_side: str) -> list[dict[str, str]]:
    """The tool messages answering ``calls``, in order (the first ``max_parallel_calls`` run concurrently)."""
    run, extra = calls[:max_parallel_calls], calls[max_parallel_calls:]
    for name in dict.fromkeys(c.name for c in run if c.error is None and c.name in tools):
        await _ensure_instance(traj, tools[name])  # one instance per tool per trajectory, before the calls race
    results = list(await asyncio.gather(*(_call(traj, c, tools) for c in run)))
    results += [(f"Error: not run: at most {max_parallel_calls} tool call(s) per turn "
                 "(actor_rollout_ref.rollout.multi_turn.max_parallel_calls).", "over_limit")] * len(extra)
    traj.tool_calls += len(calls)
    messages = []
    for text, failure in results:
        if failure is not None:
            traj.tool_failures[failure] += 1
        messages.append({"role": "tool", "content": truncate_text(text, max_length, truncate_side)})
    return messages


async def finish_tools(traj: Trajectory, tools: Mapping[str, BaseTool]) -> None:
    """``calc_reward`` (into ``traj.reward_scores[<tool name>]``) and ``release`` for every instance created."""
    for name, instance in traj.tool_instances.items():
        tool = tools[name]
        try:
            traj.reward_scores[name] = float(await tool.calc_reward(instance, **_kwargs(traj, name, "calc_reward_kwargs")))
        except Exception as err:
            logger.warning("tool %r: calc_reward failed: %s: %s", name, type(err).__name__, err)
        try:
            await tool.release(instance, **_kwargs(traj, name, "release_kwargs"))
        except Exception as err:
            logger.warning("tool %r: release failed: %s: %s", name, type(err).__name__, err)
