"""Ray-free single-controller pieces: workers, worker groups, resource pools and ``@register``."""

from verl.single_controller.base.decorator import Dispatch, Execute, register
from verl.single_controller.base.worker import Worker
from verl.single_controller.base.worker_group import ResourcePool, WorkerGroup

__all__ = ["Dispatch", "Execute", "ResourcePool", "Worker", "WorkerGroup", "register"]
