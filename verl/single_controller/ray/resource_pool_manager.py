"""``ResourcePoolManager``: which resource pool each role (actor, critic, ...) runs on."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import ray

from verl.single_controller.ray.base import RayResourcePool

__all__ = ["ResourcePoolManager"]


@dataclass
class ResourcePoolManager:
    """Named resource pools and the role -> pool mapping.

    Roles mapped to the same pool are colocated (they share its processes, as the hybrid engine does);
    roles on different pools run on separate processes/GPUs.

    Args:
        resource_pool_spec: pool name -> processes per node, e.g. ``{"global_pool": [8, 8]}``.
        mapping: role -> pool name.
        use_gpu: whether each process takes a GPU.
        max_colocate_count: how many worker groups may share a pool's processes.
    """

    resource_pool_spec: dict[str, list[int]]
    mapping: dict[Hashable, str]
    use_gpu: bool = True
    max_colocate_count: int = 1
    resource_pool_dict: dict[str, RayResourcePool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = {role: pool for role, pool in self.mapping.items() if pool not in self.resource_pool_spec}
        if unknown:
            raise ValueError(f"roles mapped to undefined pools: {unknown}; defined pools: {list(self.resource_pool_spec)}")

    def create_resource_pool(self) -> None:
        """Check the cluster can hold every pool, then create them (placement groups are reserved lazily)."""
        self.check_resources_available()
        for name, process_on_nodes in self.resource_pool_spec.items():
            self.resource_pool_dict[name] = RayResourcePool(
                process_on_nodes=process_on_nodes,
                use_gpu=self.use_gpu,
                max_colocate_count=self.max_colocate_count,
                name_prefix=f"{name}_",
            )

    def get_resource_pool(self, role: Hashable) -> RayResourcePool:
        if role not in self.mapping:
            raise KeyError(f"role {role!r} has no resource pool; mapped roles: {list(self.mapping)}")
        if not self.resource_pool_dict:
            self.create_resource_pool()
        return self.resource_pool_dict[self.mapping[role]]

    def get_n_gpus(self) -> int:
        return sum(sum(nodes) for nodes in self.resource_pool_spec.values()) if self.use_gpu else 0

    def check_resources_available(self) -> None:
        resource = "GPU" if self.use_gpu else "CPU"
        needed = sum(sum(nodes) for nodes in self.resource_pool_spec.values())
        have = ray.cluster_resources().get(resource, 0)
        if needed > have:
            raise RuntimeError(
                f"the resource pools {self.resource_pool_spec} need {needed} {resource}s but the Ray cluster has "
                f"{have:g}; lower trainer.n_gpus_per_node / trainer.nnodes or add nodes"
            )
