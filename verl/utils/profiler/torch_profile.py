"""Profiling chosen training steps with ``torch.profiler`` (``global_profiler.tool=torch``) or CUDA memory
snapshots (``tool=torch_memory``), on chosen ranks of chosen roles.

The driver's :class:`StepProfiler` asks each profiled role's worker group to start before a chosen step and
to stop after it (a run of consecutive steps is one trace with ``profile_continuous_steps``). In a worker
process one profiler runs at a time: colocated roles share it, and its trace is named after all of them:
``<save_path>/step_<N>/<roles>_rank<R>.pt.trace.json`` (Chrome trace format: open it in Perfetto,
``chrome://tracing`` or TensorBoard's profiler plugin), or ``.pickle`` memory snapshots for ``torch_memory``
(open them at https://pytorch.org/memory_viz).
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["StepProfiler", "start_profile", "stop_profile"]

_state: dict[str, Any] = {"profiler": None, "tool": None, "roles": []}


def start_profile(rank: int, role: str, tool: str, ranks: list[int], all_ranks: bool, contents: list[str],
                  memory_options: dict[str, Any] | None = None) -> bool:
    """Start profiling this process for ``role`` if ``rank`` is chosen; True when this process is profiled."""
    if not (all_ranks or rank in (ranks or [0])):
        return False
    if _state["tool"] is not None:  # a colocated role already started it
        _state["roles"].append(role)
        return True
    if tool == "torch":
        from torch.profiler import ProfilerActivity, profile

        accelerator = torch.cuda.is_available()  # device-ok: which activity the profiler can record
        activities = [ProfilerActivity.CPU] if not contents or "cpu" in contents else []
        if accelerator and (not contents or "cuda" in contents):  # device-ok: the "cuda" content name (accelerator activity)
            activities.append(ProfilerActivity.CUDA)
        prof = profile(activities=activities or [ProfilerActivity.CPU], record_shapes="shapes" in contents,
                       profile_memory="memory" in contents, with_stack="stack" in contents)
        prof.start()
        _state["profiler"] = prof
    elif tool == "torch_memory":
        opts = dict(memory_options or {})
        opts.pop("stack_depth", None)  # verl's option; torch records the whole stack
        torch.cuda.memory._record_memory_history(  # device-ok: CUDA memory history (checked: GPU only)
            max_entries=opts.pop("trace_alloc_max_entries", 100000), stacks=opts.pop("stacks", "all"),
            context=opts.pop("context", "all"), **opts.pop("kw_args", {}))
    else:
        raise ValueError(f"profiler tool {tool!r}: use torch or torch_memory")
    _state.update(tool=tool, roles=[role])
    return True


def stop_profile(rank: int, save_dir: str) -> str | None:
    """Stop this process's profiler and write its trace under ``save_dir``; the file's path (None when idle)."""
    tool = _state["tool"]
    if tool is None:
        return None
    os.makedirs(save_dir, exist_ok=True)
    name = "_".join(dict.fromkeys(_state["roles"]))
    if tool == "torch":
        prof = _state["profiler"]
        prof.stop()
        path = os.path.join(save_dir, f"{name}_rank{rank}.pt.trace.json")
        prof.export_chrome_trace(path)
    else:
        path = os.path.join(save_dir, f"{name}_rank{rank}.pickle")
        torch.cuda.memory._dump_snapshot(path)  # device-ok
        torch.cuda.memory._record_memory_history(enabled=None)  # device-ok
    _state.update(profiler=None, tool=None, roles=[])
    return path


class StepProfiler:
    """The driver's side: which steps are profiled, and the start/stop calls on the profiled roles' groups.

    Args:
        config: the :class:`PPOConfig` (``global_profiler`` and each role's ``profiler``).
        groups: ``{role: worker group}`` of the running roles (``actor_rollout``, ``ref``, ``critic``, ``rm``).
    """

    def __init__(self, config: Any, groups: dict[str, Any]):
        from verl.trainer.config.features import profiled_roles

        gp = config.global_profiler
        self.continuous = gp.profile_continuous_steps
        self.steps = set(gp.steps or [])
        self.roles = {role: (groups[role], p, p.tool or gp.tool, p.save_path or gp.save_path)
                      for role, p in profiled_roles(config).items() if groups.get(role) is not None}
        self.memory_options = {k: v for k, v in vars(gp.global_tool_config.torch_memory).items()}
        self._first = None

    def start(self, step: int) -> None:
        if step not in self.steps or not self.roles or (self.continuous and step - 1 in self.steps):
            return
        self._first = step
        for role, (group, p, tool, _) in self.roles.items():
            opts = {**self.memory_options, "trace_alloc_max_entries": p.tool_config.torch_memory.trace_alloc_max_entries}
            group.start_profile(role=role, tool=tool, ranks=list(p.ranks), all_ranks=p.all_ranks,
                                contents=list(p.tool_config.torch.contents), memory_options=opts)

    def stop(self, step: int) -> None:
        if step not in self.steps or not self.roles or (self.continuous and step + 1 in self.steps):
            return
        name = f"step_{step}" if self._first in (None, step) else f"step_{self._first}-{step}"
        for group, _, _, save_path in {id(g): (g, p, t, s) for g, p, t, s in self.roles.values()}.values():
            group.stop_profile(save_dir=os.path.join(save_path, name))
