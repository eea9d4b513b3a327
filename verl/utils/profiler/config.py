"""verl's profiler config: ``global_profiler.*`` (which tool, which steps, where) and each role's ``*.profiler.*``
(whether that role is profiled, and on which ranks). :mod:`verl.utils.profiler.torch_profile` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["GlobalProfilerConfig", "GlobalToolConfig", "NPUToolConfig", "NsightToolConfig", "ProfilerConfig",
           "ProfilerToolConfig", "TorchMemoryToolConfig", "TorchProfilerToolConfig"]

TOOLS = ("torch", "torch_memory")
REFUSED_TOOLS = {
    "nsys": "Nsight Systems profiling needs Ray's nsight runtime plugin, which this library does not wire up; use "
            "global_profiler.tool=torch (torch.profiler traces, viewable in Perfetto or TensorBoard)",
    "npu": "Ascend NPUs are not supported; use global_profiler.tool=torch",
}
TORCH_CONTENTS = ("cpu", "cuda", "memory", "shapes", "stack")  # device-ok: verl's profiler content names


@dataclass
class NsightToolConfig:
    """Nsight Systems options (the ``nsys`` tool is refused here; the key is kept so verl configs parse)."""

    discrete: bool = False
    """One database per task (True) or per step (False)."""


@dataclass
class NPUToolConfig:
    """Ascend NPU profiler options (the ``npu`` tool is refused here)."""

    contents: list[str] = field(default_factory=list)
    """What to record."""
    level: str = "level0"
    """Collection level."""
    analysis: bool = True
    """Parse the data automatically."""
    discrete: bool = False
    """One database per task."""


@dataclass
class TorchProfilerToolConfig:
    """``torch.profiler`` options of a role."""

    contents: list[str] = field(default_factory=list)
    """What to record besides CPU/accelerator activity: any of ``cpu``, ``cuda`` (the accelerator), ``memory``,
    ``shapes``, ``stack``; empty = CPU and the accelerator (when there is one)."""
    discrete: bool = False
    """False: one trace per profiled step and process, covering every role in it. True (verl: one trace per
    role method) is not supported."""


@dataclass
class TorchMemoryToolConfig:
    """CUDA memory-history snapshots (``global_profiler.tool=torch_memory``; GPU only)."""

    trace_alloc_max_entries: int = 100000
    """Allocation events kept in the history."""
    stack_depth: int = 32
    """Frames recorded per allocation."""


@dataclass
class ProfilerToolConfig:
    """Per-tool options of a role."""

    nsys: NsightToolConfig = field(default_factory=NsightToolConfig)
    """Nsight options (tool refused)."""
    npu: NPUToolConfig = field(default_factory=NPUToolConfig)
    """NPU options (tool refused)."""
    torch: TorchProfilerToolConfig = field(default_factory=TorchProfilerToolConfig)
    """torch.profiler options."""
    torch_memory: TorchMemoryToolConfig = field(default_factory=TorchMemoryToolConfig)
    """Memory-history options."""


@dataclass
class ProfilerConfig:
    """A role's profiler (``actor_rollout_ref.actor.profiler``, ``critic.profiler``, ...)."""

    tool: str | None = None
    """The tool; None = ``global_profiler.tool``."""
    enable: bool = False
    """Profile this role's processes in the steps of ``global_profiler.steps``."""
    all_ranks: bool = False
    """Profile every rank of the role."""
    ranks: list[int] = field(default_factory=list)
    """Ranks to profile when ``all_ranks`` is false ([] = rank 0)."""
    save_path: str | None = None
    """Output folder; None = ``global_profiler.save_path``."""
    tool_config: ProfilerToolConfig = field(default_factory=ProfilerToolConfig)
    """Per-tool options."""


@dataclass
class GlobalNsightConfig:
    """``global_profiler.global_tool_config.nsys``."""

    discrete: bool = False
    """One database per task."""
    controller_nsight_options: dict[str, Any] = field(default_factory=lambda: {
        "trace": "cuda,nvtx,cublas,ucx", "cuda-memory-usage": "true", "cuda-graph-trace": "graph"})
    """``nsys`` options of the driver."""
    worker_nsight_options: dict[str, Any] = field(default_factory=lambda: {
        "trace": "cuda,nvtx,cublas,ucx", "cuda-memory-usage": "true", "cuda-graph-trace": "graph",
        "capture-range": "cudaProfilerApi", "capture-range-end": None, "kill": "none"})
    """``nsys`` options of the workers."""


@dataclass
class GlobalTorchMemoryConfig:
    """``global_profiler.global_tool_config.torch_memory``: CUDA memory history (GPU only)."""

    trace_alloc_max_entries: int = 100000
    """Allocation events kept."""
    stack_depth: int = 32
    """Frames per allocation (with ``stacks=all``)."""
    context: str = "all"
    """``torch.cuda.memory._record_memory_history(context=...)``: ``alloc``, ``state`` or ``all``."""
    stacks: str = "all"
    """``python`` or ``all`` (with C++ frames)."""
    kw_args: dict[str, Any] = field(default_factory=dict)
    """More keyword arguments of ``_record_memory_history``."""


@dataclass
class GlobalToolConfig:
    """``global_profiler.global_tool_config``."""

    nsys: GlobalNsightConfig = field(default_factory=GlobalNsightConfig)
    """Nsight options (tool refused)."""
    torch_memory: GlobalTorchMemoryConfig = field(default_factory=GlobalTorchMemoryConfig)
    """Memory-history options."""


@dataclass
class GlobalProfilerConfig:
    """``global_profiler``: the tool, the steps and the output folder shared by every role's profiler."""

    tool: str | None = None
    """``torch`` (torch.profiler Chrome traces, viewable in Perfetto / ``chrome://tracing`` / TensorBoard) or
    ``torch_memory`` (CUDA memory snapshots, GPU only); None = no profiling. ``nsys`` and ``npu`` are refused."""
    steps: list[int] | None = None
    """Training steps to profile (1-based, e.g. ``[1,2]``); None = none."""
    profile_continuous_steps: bool = False
    """Consecutive profiled steps go into one trace (from the first to the last step of each run of steps)."""
    save_path: str = "outputs/profile"
    """Output folder: ``<save_path>/step_<N>/<role>_rank<R>.pt.trace.json`` (or ``step_<A>-<B>`` for continuous runs)."""
    global_tool_config: GlobalToolConfig = field(default_factory=GlobalToolConfig)
    """Per-tool options shared by the roles."""
