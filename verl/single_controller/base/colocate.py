"""Several roles in one worker process: the hybrid engine's colocation, shared by every kind of worker group.

:func:`create_colocated_worker_cls` builds one :class:`Worker` class that holds an instance of each role; role
``r``'s method ``m`` becomes ``r_m`` on it, and ``WorkerGroup.spawn`` gives each role a view with its own
method names. Roles in one process share memory (and the device) directly.
"""

from __future__ import annotations

from verl.single_controller.base.decorator import MAGIC_ATTR
from verl.single_controller.base.worker import Worker
from verl.single_controller.base.worker_group import ClassWithInitArgs

__all__ = ["create_colocated_worker_cls", "colocated_worker_class"]


def colocated_worker_class(class_dict: dict[str, ClassWithInitArgs]) -> type[Worker]:
    """The combined worker class (not yet wrapped with its constructor arguments)."""
    for role, c in class_dict.items():
        if not issubclass(c.cls, Worker):
            raise TypeError(f"role {role!r}: {c.cls.__name__} must subclass verl.single_controller.base.Worker")
    roles = {role: (c.cls, c.args, c.kwargs) for role, c in class_dict.items()}

    class WorkerDict(Worker):
        def __init__(self):
            super().__init__()
            self.worker_dict = {role: cls(*args, **kwargs) for role, (cls, args, kwargs) in roles.items()}

        def close(self) -> None:
            """Release each role's resources (an in-process group calls this when it is killed)."""
            for worker in self.worker_dict.values():
                close = getattr(worker, "close", None)
                if callable(close):
                    close()

    for role, (cls, _, _) in roles.items():
        for name in dir(cls):
            attrs = getattr(getattr(cls, name, None), MAGIC_ATTR, None)
            if attrs is not None:
                setattr(WorkerDict, f"{role}_{name}", _forward(role, name, attrs))
    WorkerDict.__name__ = WorkerDict.__qualname__ = "WorkerDict_" + "_".join(roles)
    WorkerDict.colocated_classes = {role: cls for role, (cls, _, _) in roles.items()}
    return WorkerDict


def create_colocated_worker_cls(class_dict: dict[str, ClassWithInitArgs]) -> ClassWithInitArgs:
    """One worker class holding every role of ``class_dict``, with its ``colocated_classes`` set for ``spawn``."""
    worker_cls = colocated_worker_class(class_dict)
    combined = ClassWithInitArgs(worker_cls)
    combined.colocated_classes = dict(worker_cls.colocated_classes)
    return combined


def _forward(role: str, name: str, attrs: dict):
    def method(self, *args, **kwargs):
        return getattr(self.worker_dict[role], name)(*args, **kwargs)

    method.__name__ = f"{role}_{name}"
    setattr(method, MAGIC_ATTR, attrs)
    return method
