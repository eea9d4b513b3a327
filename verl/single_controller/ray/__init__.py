"""Worker groups on Ray: placement-group resource pools, actor worker groups, colocated roles."""

from verl.single_controller.ray.base import (
    RayClassWithInitArgs,
    RayResourcePool,
    RayWorkerGroup,
    WorkerGroupError,
    create_colocated_worker_cls,
)
from verl.single_controller.ray.resource_pool_manager import ResourcePoolManager

__all__ = [
    "RayClassWithInitArgs",
    "RayResourcePool",
    "RayWorkerGroup",
    "ResourcePoolManager",
    "WorkerGroupError",
    "create_colocated_worker_cls",
]
