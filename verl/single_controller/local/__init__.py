"""Worker groups in the driver's own process: one rank, no Ray (local mode, one device)."""

from verl.single_controller.local.worker_group import LocalWorkerGroup, single_process_world

__all__ = ["LocalWorkerGroup", "single_process_world"]
