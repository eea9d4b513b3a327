"""Worker groups on Ray: placement-group resource pools, actor worker groups, colocated roles."""

from verl.single_controller.ray.base import (
    RayClassWithInitArgs,
    RayResourcePool,
    RayWorkerGroup,
    WorkerCallTimeoutError,
    WorkerGroupError,
    create_colocated_worker_cls,
)
from verl.single_controller.ray.resource_pool_manager import ResourcePoolManager

__all__ = [
    "RayClassWithInitArgs",
    "RayResourcePool",
    "RayWorkerGroup",
    "ResourcePoolManager",
    "WorkerCallTimeoutError",
    "WorkerGroupError",
    "create_colocated_worker_cls",
]
