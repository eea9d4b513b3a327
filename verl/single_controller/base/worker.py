"""``Worker``: the base class of every SPMD worker process.

The worker group starts each worker with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in its environment; ``Worker.__init__`` reads its rank and device from them and nothing more.
As in verl, joining the group's torch.distributed world (gloo on CPU, nccl on GPUs) is the job of the worker
classes that need it: they call :meth:`Worker.init_process_group` in their own ``__init__`` (the FSDP actor,
critic and reward-model workers do). Several workers colocated in one process share that one world.
"""

from __future__ import annotations

import datetime
import os
import socket

from verl.single_controller.base.decorator import Dispatch, register
from verl.utils.device import get_device, get_device_name, get_dist_backend

__all__ = ["WORLD_ENV", "Worker", "get_node_ip", "find_free_port"]

WORLD_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""The environment variables a worker group sets for each rank."""

# Long enough for the slowest peer to import torch and build its model, short enough not to hang forever.
DIST_INIT_TIMEOUT_S = int(os.environ.get("VERL_DIST_INIT_TIMEOUT_S", "600"))


def get_node_ip() -> str:
    """This node's IP as peers on other nodes see it (loopback when there is no route out)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class Worker:
    """Base class of workers; subclasses call ``super().__init__()`` first.

    Attributes:
        rank: this worker's rank in its group (0 when run outside a group).
        world_size: number of workers in the group.
        device: the torch device this worker computes on.
    """

    def __init__(self) -> None:
        from verl.single_controller.base.watchdog import install_stack_dump_handler

        install_stack_dump_handler()  # the driver's watchdog can ask this process for its threads' stacks
        self._rank = int(os.environ.get("RANK", 0))
        self._world_size = int(os.environ.get("WORLD_SIZE", 1))
        self._local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = get_device(self._local_rank)
        self._dispatch_info: dict[str, tuple[int, bool]] = {}

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def init_process_group(self) -> None:
        """Join the group's torch.distributed world from ``MASTER_ADDR``/``MASTER_PORT``/``RANK``/``WORLD_SIZE``.

        A no-op when this process already joined one (e.g. through a colocated role), and for a one-rank worker
        built outside any group (no ``MASTER_ADDR``/``MASTER_PORT``), which then runs without torch.distributed.
        """
        import torch
        import torch.distributed as dist

        if dist.is_initialized():  # another colocated role in this process already joined
            return
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing and self._world_size == 1:
            return
        if missing:
            raise RuntimeError(f"{type(self).__name__} is rank {self._rank} of WORLD_SIZE={self._world_size} but "
                               f"{missing} are not set; build it through a worker group (RayWorkerGroup / "
                               "LocalWorkerGroup), which sets them")
        device_name = get_device_name()
        if device_name == "cuda":  # device-ok: pin this process's GPU before nccl sees it
            torch.cuda.set_device(self.device)
        dist.init_process_group(
            backend=get_dist_backend(device_name),
            init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
            rank=self._rank,
            world_size=self._world_size,
            timeout=datetime.timedelta(seconds=DIST_INIT_TIMEOUT_S),
        )

    # Mesh dispatch (see ``make_nd_compute_dataproto_dispatch_fn``).

    def _register_dispatch_collect_info(self, mesh_name: str, dp_rank: int, is_collect: bool) -> None:
        """Declare this worker's data-parallel rank in ``mesh_name`` and whether its output is collected."""
        self._dispatch_info[mesh_name] = (int(dp_rank), bool(is_collect))

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def _query_dispatch_info(self, mesh_name: str) -> tuple[int, bool]:
        if mesh_name not in self._dispatch_info:
            raise KeyError(
                f"worker rank {self._rank} registered no dispatch info for mesh {mesh_name!r}; call "
                f"self._register_dispatch_collect_info({mesh_name!r}, dp_rank, is_collect) in __init__ or init_model"
            )
        return self._dispatch_info[mesh_name]

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def get_node_ip_and_pid(self) -> tuple[str, int]:
        return get_node_ip(), os.getpid()

    # Profiling (global_profiler / *.profiler; see verl.utils.profiler.torch_profile).

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def start_profile(self, role: str, tool: str, ranks: list[int], all_ranks: bool, contents: list[str],
                      memory_options: dict | None = None) -> bool:
        """Start profiling this process for ``role`` when this rank is chosen (colocated roles share one profiler)."""
        from verl.utils.profiler.torch_profile import start_profile

        return start_profile(self._rank, role, tool, ranks, all_ranks, contents, memory_options)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stop_profile(self, save_dir: str) -> str | None:
        """Stop this process's profiler and write its trace under ``save_dir`` (its path, or None when idle)."""
        from verl.utils.profiler.torch_profile import stop_profile

        return stop_profile(self._rank, save_dir)
