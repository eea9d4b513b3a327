"""The single controller on a local Ray cluster of CPU workers (gloo)."""

import os
import sys
import time

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
from ray import cloudpickle  # noqa: E402

from verl import DataProto  # noqa: E402
from verl.single_controller.base import Worker  # noqa: E402
from verl.single_controller.base.decorator import (  # noqa: E402
    Dispatch,
    Execute,
    make_nd_compute_dataproto_dispatch_fn,
    register,
    register_dispatch_mode,
)
from verl.single_controller.ray import (  # noqa: E402
    RayClassWithInitArgs,
    RayResourcePool,
    RayWorkerGroup,
    ResourcePoolManager,
    WorkerGroupError,
    create_colocated_worker_cls,
)

# Worker classes below live in this test module, which Ray's worker processes cannot import by name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def free_placement_groups():
    """Each test reserves its own pools; give them back so later tests find free CPUs."""
    yield
    for pg_id, info in ray.util.placement_group_table().items():
        if info["state"] != "REMOVED":
            ray.util.remove_placement_group(ray.util.get_placement_group(info["name"]))


def make_group(cls, n=2, *args, **kwargs):
    pool = RayResourcePool(process_on_nodes=[n], use_gpu=False)
    return RayWorkerGroup(pool, RayClassWithInitArgs(cls, *args, **kwargs))


class MathWorker(Worker):
    def __init__(self, offset: int = 0):
        super().__init__()
        self.init_process_group()  # a worker that needs torch.distributed joins it itself, as verl's workers do
        self.offset = offset

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def env(self, name: str):
        return os.environ.get(name)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def all_reduce(self, value: float) -> float:
        t = torch.tensor([value * (self.rank + 1)])
        torch.distributed.all_reduce(t)
        return t.item()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def whoami(self):
        return self.rank, self.world_size, torch.distributed.get_backend(), os.getpid()

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def tag_rows(self, data: DataProto) -> DataProto:
        x = data.batch["x"]
        return DataProto.from_dict(
            {"x": x, "doubled": x * 2 + self.offset, "rank": torch.full_like(x, self.rank)},
            {"uid": data.non_tensor_batch["uid"]},
        )

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO, blocking=False)
    def tag_rows_async(self, data: DataProto) -> DataProto:
        return self.tag_rows(data)

    @register(dispatch_mode=Dispatch.DP_COMPUTE_METRIC)
    def row_count(self, data: DataProto) -> dict:
        return {"rows": len(data), "rank": self.rank}

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO_WITH_FUNC)
    def apply(self, fn, data: DataProto) -> DataProto:
        return DataProto.from_dict({"y": fn(data.batch["x"])})

    @register(dispatch_mode=Dispatch.DP_COMPUTE)
    def scale(self, factor: int) -> int:
        return factor * 10 + self.rank

    @register(dispatch_mode=Dispatch.RANK_ZERO)
    def rank_zero_only(self, value):
        return (self.rank, value)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL, execute_mode=Execute.RANK_ZERO)
    def execute_on_zero(self):
        return self.rank

    @register()
    def all_to_all(self, value):
        return (self.rank, value)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def explode(self, rank_to_fail: int):
        if self.rank == rank_to_fail:
            raise ValueError("reward function exploded")
        time.sleep(60)  # the healthy peer is still busy: the driver must not wait for it
        return "never"


def test_gloo_group_all_reduce():
    pool = RayResourcePool(process_on_nodes=[2], use_gpu=False)
    wg = RayWorkerGroup(pool, RayClassWithInitArgs(MathWorker), worker_env={"VERL_TEST_FLAG": "on", "N_THREADS": 3})
    assert wg.env("VERL_TEST_FLAG") == ["on", "on"] and wg.env("N_THREADS") == ["3", "3"]
    with pytest.raises(ValueError, match=r"may not override \['RANK'\]"):
        RayWorkerGroup(pool, RayClassWithInitArgs(MathWorker), worker_env={"RANK": "5"})
    info = wg.whoami()
    assert [(r, w, b) for r, w, b, _ in info] == [(0, 2, "gloo"), (1, 2, "gloo")]
    assert info[0][3] != info[1][3], "two worker processes"
    # rank r contributes 3 * (r + 1): 3 + 6
    assert wg.all_reduce(3.0) == [9.0, 9.0]
    wg.kill()


def test_dp_compute_proto_returns_rows_in_order_with_uneven_split():
    wg = make_group(MathWorker, 2, offset=100)
    data = DataProto.from_dict({"x": torch.arange(5)}, {"uid": np.array(list("abcde"), dtype=object)})
    out = wg.tag_rows(data)
    assert len(out) == 5
    assert out.batch["x"].tolist() == [0, 1, 2, 3, 4]
    assert out.batch["doubled"].tolist() == [100, 102, 104, 106, 108]
    assert out.batch["rank"].tolist() == [0, 0, 0, 1, 1], "3 rows to rank 0, 2 real rows (+1 padding) to rank 1"
    assert list(out.non_tensor_batch["uid"]) == list("abcde")

    # other dispatch modes on the same group
    assert wg.row_count(data) == [{"rows": 3, "rank": 0}, {"rows": 3, "rank": 1}]
    assert wg.apply(lambda x: x + 1, data).batch["y"].tolist() == [1, 2, 3, 4, 5]
    assert wg.scale([1, 2]) == [10, 21]
    with pytest.raises(ValueError, match="DP_COMPUTE needs every argument as a list of 2"):
        wg.scale(3)
    assert wg.rank_zero_only("hi") == (0, "hi")
    assert wg.execute_on_zero() == [0]
    assert wg.all_to_all(["a", "b"]) == [(0, "a"), (1, "b")]
    assert wg.all_to_all("same") == [(0, "same"), (1, "same")]
    wg.kill()


def test_non_blocking_future_feeds_the_next_call():
    wg = make_group(MathWorker, 2)
    data = DataProto.from_dict({"x": torch.arange(4)}, {"uid": np.array(list("abcd"), dtype=object)})
    future = wg.tag_rows_async(data)
    assert hasattr(future, "get")
    chained = wg.tag_rows(future.get().select(batch_keys=["doubled"], non_tensor_batch_keys=["uid"]).rename("doubled", "x"))
    assert chained.batch["doubled"].tolist() == [0, 4, 8, 12]
    direct = wg.tag_rows(wg.tag_rows_async(data))  # a future passed straight in is awaited by the dispatch
    assert direct.batch["doubled"].tolist() == [0, 2, 4, 6]
    wg.kill()


class ShardedWorker(Worker):
    """Four workers as a 2 (dp) x 2 (tp) mesh: tp peers get the same shard, only tp rank 0 returns it."""

    def __init__(self):
        super().__init__()
        self.dp_rank, self.tp_rank = divmod(self.rank, 2)
        self._register_dispatch_collect_info("train", dp_rank=self.dp_rank, is_collect=self.tp_rank == 0)

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="train"))
    def compute(self, data: DataProto) -> DataProto:
        x = data.batch["x"]
        return DataProto.from_dict({"x": x, "dp": torch.full_like(x, self.dp_rank), "tp": torch.full_like(x, self.tp_rank)})


def test_mesh_dispatch_collects_two_of_four():
    wg = make_group(ShardedWorker, 4)
    out = wg.compute(DataProto.from_dict({"x": torch.arange(6)}))
    assert out.batch["x"].tolist() == [0, 1, 2, 3, 4, 5]
    assert out.batch["dp"].tolist() == [0, 0, 0, 1, 1, 1]
    assert out.batch["tp"].tolist() == [0] * 6, "only tp rank 0 of each dp group is collected"
    wg.kill()


_SHARED = {}


class ActorRole(Worker):
    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def publish(self, value: int):
        _SHARED["weights"] = value * self.scale
        return os.getpid()


class RolloutRole(Worker):
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def read(self):
        return _SHARED.get("weights"), os.getpid(), self.rank

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def generate(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"out": data.batch["x"] + _SHARED["weights"]})


def test_colocated_roles_share_one_process():
    cls = create_colocated_worker_cls({"actor": RayClassWithInitArgs(ActorRole, scale=3), "rollout": RayClassWithInitArgs(RolloutRole)})
    pool = RayResourcePool(process_on_nodes=[2], use_gpu=False)
    wg = RayWorkerGroup(pool, cls)
    roles = wg.spawn(prefix_set={"actor", "rollout"})
    pids = roles["actor"].publish(7)
    read = roles["rollout"].read()
    assert [w for w, _, _ in read] == [21, 21], "rollout sees the state the actor wrote"
    assert [p for _, p, _ in read] == pids, "each rank's two roles live in the same process"
    assert [r for _, _, r in read] == [0, 1]
    assert roles["rollout"].generate(DataProto.from_dict({"x": torch.arange(3)})).batch["out"].tolist() == [21, 22, 23]
    assert not hasattr(roles["rollout"], "publish")
    wg.kill()


def test_two_groups_colocated_on_one_pool():
    pool = RayResourcePool(process_on_nodes=[2], use_gpu=False, max_colocate_count=2)
    a = RayWorkerGroup(pool, RayClassWithInitArgs(MathWorker), name_prefix="a")
    b = RayWorkerGroup(pool, RayClassWithInitArgs(MathWorker), name_prefix="b")
    assert a.all_reduce(1.0) == [3.0, 3.0] and b.all_reduce(2.0) == [6.0, 6.0]
    a.kill(), b.kill()


def test_worker_error_reaches_driver_fast_and_names_worker_and_method():
    wg = make_group(MathWorker, 2)
    start = time.monotonic()
    with pytest.raises(WorkerGroupError, match=r"MathWorker_1 \(rank 1\) failed in explode: ValueError: reward function exploded"):
        wg.explode(1)
    assert time.monotonic() - start < 20
    wg.kill()


def test_custom_dispatch_mode():
    def dispatch(wg, items):
        return ([items[r :: wg.world_size] for r in range(wg.world_size)],), {}

    def collect(wg, outputs):
        return sorted(x for out in outputs for x in out)

    register_dispatch_mode("ROUND_ROBIN", dispatch, collect)

    class RoundRobin(Worker):
        @register(dispatch_mode="ROUND_ROBIN")
        def square(self, items):
            return [x * x for x in items]

    wg = make_group(RoundRobin, 2)
    assert wg.square([1, 2, 3, 4, 5]) == [1, 4, 9, 16, 25]
    with pytest.raises(ValueError, match="unknown dispatch mode"):
        register(dispatch_mode="NOPE")
    wg.kill()


def test_dataproto_travels_through_ray_object_store():
    d = DataProto.from_dict({"x": torch.randn(32, 16).bfloat16()}, {"uid": [str(i) for i in range(32)]}, {"eos": [1]})
    back = ray.get(ray.put(d))
    assert torch.equal(back.batch["x"], d.batch["x"]) and back.meta_info == {"eos": [1]}
    back.batch["x"].add_(1)  # the copy is writable and independent of the store's read-only memory
    assert not torch.equal(back.batch["x"], d.batch["x"])


def test_resource_pool_manager_maps_roles_and_checks_capacity():
    mgr = ResourcePoolManager({"global_pool": [2]}, {"actor": "global_pool", "critic": "global_pool"}, use_gpu=False)
    mgr.create_resource_pool()
    assert mgr.get_resource_pool("actor") is mgr.get_resource_pool("critic")
    with pytest.raises(KeyError, match="no resource pool"):
        mgr.get_resource_pool("reward")
    with pytest.raises(ValueError, match="undefined pools"):
        ResourcePoolManager({"a": [1]}, {"actor": "b"}, use_gpu=False)
    with pytest.raises(RuntimeError, match="need 1000 CPUs"):
        ResourcePoolManager({"big": [1000]}, {"actor": "big"}, use_gpu=False).create_resource_pool()
