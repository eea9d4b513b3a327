"""verl's profiler interface: ``global_profiler`` / ``*.profiler`` configs and the torch.profiler runner."""

from verl.utils.profiler.config import GlobalProfilerConfig, ProfilerConfig

__all__ = ["GlobalProfilerConfig", "ProfilerConfig"]
