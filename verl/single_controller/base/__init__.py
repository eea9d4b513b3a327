"""Ray-free single-controller pieces: workers, worker groups, resource pools, colocation and ``@register``."""

from verl.single_controller.base.colocate import create_colocated_worker_cls
from verl.single_controller.base.decorator import Dispatch, Execute, register
from verl.single_controller.base.watchdog import WorkerCallTimeoutError
from verl.single_controller.base.worker import Worker
from verl.single_controller.base.worker_group import ClassWithInitArgs, ResourcePool, WorkerGroup

__all__ = [
    "ClassWithInitArgs",
    "Dispatch",
    "Execute",
    "ResourcePool",
    "Worker",
    "WorkerCallTimeoutError",
    "WorkerGroup",
    "create_colocated_worker_cls",
    "register",
]
