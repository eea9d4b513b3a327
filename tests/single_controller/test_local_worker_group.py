"""The single controller in one process (local mode): the base dispatch/collect, colocated roles, a one-rank
torch.distributed world in the environment, and inputs handed over as a copy that travelled would be."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist

from verl import DataProto
from verl.single_controller.base import ClassWithInitArgs, Worker, WorkerGroup, create_colocated_worker_cls
from verl.single_controller.base.decorator import DataProtoFuture, Dispatch, register
from verl.single_controller.local import LocalWorkerGroup, single_process_world


class DoubleWorker(Worker):
    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = offset
        self.closed = False
        self.seen_meta: list[dict] = []

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def double(self, data: DataProto) -> DataProto:
        data.meta_info["touched_by_worker"] = True  # must not reach the driver's object
        self.seen_meta.append(dict(data.meta_info))
        return DataProto.from_dict({"y": data.batch["x"] * 2 + self.offset})

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def world(self) -> tuple[int, int, bool, str]:
        return self.rank, self.world_size, dist.is_initialized(), os.environ["LOCAL_RANK"]

    @register(dispatch_mode=Dispatch.RANK_ZERO, blocking=False)
    def add(self, a: int, b: int) -> int:
        return a + b

    def close(self) -> None:
        self.closed = True


class CountWorker(Worker):
    def __init__(self):
        super().__init__()
        self.calls = 0

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def count(self) -> int:
        self.calls += 1
        return self.calls


@pytest.fixture
def clean_world(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert not dist.is_initialized()
    yield
    assert not dist.is_initialized(), "kill() leaves torch.distributed as it found it"


def test_methods_use_the_shared_dispatch_and_collect(clean_world):
    assert "_make_method" not in LocalWorkerGroup.__dict__, "dispatch/collect come from the base WorkerGroup"
    group = LocalWorkerGroup(ClassWithInitArgs(DoubleWorker, offset=1.0), name_prefix="double")
    try:
        data = DataProto.from_dict({"x": torch.arange(5.0)}, meta_info={"temperature": 0.5})
        out = group.double(data)
        assert torch.equal(out.batch["y"], torch.arange(5.0) * 2 + 1)
        assert data.meta_info == {"temperature": 0.5}, "the worker's edit of its input stayed in the worker"
        assert group.workers[0].seen_meta == [{"temperature": 0.5, "touched_by_worker": True}]
        assert group.world() == [(0, 1, False, "0")], "a plain Worker does not join a process group (verl's does not)"
        future = group.add(2, 3)
        assert isinstance(future, DataProtoFuture) and future.get() == 5
        assert group.worker_names == ["double_0"] and group.world_size == 1
    finally:
        worker = group.workers[0]
        group.kill()
    assert worker.closed
    assert "MASTER_PORT" not in os.environ and "RANK" not in os.environ, "the environment is restored"


def test_colocated_roles_share_one_process(clean_world):
    colocated = create_colocated_worker_cls({"double": ClassWithInitArgs(DoubleWorker),
                                             "count": ClassWithInitArgs(CountWorker)})
    group = LocalWorkerGroup(colocated, name_prefix="pool")
    try:
        views = group.spawn(prefix_set=["double", "count"])
        assert isinstance(views["count"], WorkerGroup)
        assert views["count"].count() == [1] and views["count"].count() == [2]
        out = views["double"].double(DataProto.from_dict({"x": torch.ones(3)}))
        assert torch.equal(out.batch["y"], torch.full((3,), 2.0))
        roles = group.workers[0].worker_dict
        assert roles["count"].calls == 2 and not hasattr(views["double"], "count")
    finally:
        group.kill()
    assert roles["double"].closed, "killing the group closes every colocated role"


def test_padding_and_non_tensors_survive_the_hand_over(clean_world):
    group = LocalWorkerGroup(ClassWithInitArgs(DoubleWorker))
    try:
        uids = np.array(["a", "b", "c"], dtype=object)
        data = DataProto.from_dict({"x": torch.arange(3.0)}, non_tensors={"uid": uids})
        (part,) = data.chunk(1)
        out = group.double(part)
        assert len(out) == 3 and torch.equal(out.batch["y"], torch.tensor([0.0, 2.0, 4.0]))
    finally:
        group.kill()


def test_a_failing_constructor_leaves_no_world(clean_world):
    class Broken(Worker):
        def __init__(self):
            super().__init__()
            raise RuntimeError("no model")

    with pytest.raises(RuntimeError, match="no model"):
        LocalWorkerGroup(ClassWithInitArgs(Broken))
    assert "MASTER_ADDR" not in os.environ


def test_single_process_world_restores_what_was_there(monkeypatch):
    monkeypatch.setenv("RANK", "7")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with single_process_world() as env:
        assert os.environ["RANK"] == "0" and os.environ["MASTER_PORT"] == env["MASTER_PORT"]
    assert os.environ["RANK"] == "7" and "MASTER_PORT" not in os.environ


class _ThreeRanks:
    """Just what the dispatch functions read from a worker group."""

    world_size = 3


def test_dp_dispatch_pads_uneven_batches_and_the_result_loses_the_padding():
    from verl.single_controller.base.decorator import PADDING_KEY, drop_padding, get_dispatch_fns

    fns = get_dispatch_fns(Dispatch.DP_COMPUTE_PROTO)
    data = DataProto.from_dict({"x": torch.arange(7)}, {"uid": np.array(list("abcdefg"), dtype=object)})
    args, kwargs = fns.dispatch_fn(_ThreeRanks(), data, scale=2)
    padding = kwargs.pop(PADDING_KEY)
    assert padding == (2, 9) and [len(p) for p in args[0]] == [3, 3, 3] and kwargs["scale"] == [2, 2, 2]
    assert args[0][2].batch["x"].tolist() == [6, 0, 1], "padding repeats the first rows"
    # each rank answers 2 samples per row (interleaved), as a rollout with n=2 does
    outputs = [p.repeat(2, interleave=True) for p in args[0]]
    out = drop_padding(fns.collect_fn(_ThreeRanks(), outputs), padding)
    assert out.batch["x"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    even_args, even_kwargs = fns.dispatch_fn(_ThreeRanks(), data[:6])
    assert PADDING_KEY not in even_kwargs and [len(p) for p in even_args[0]] == [2, 2, 2]
    with pytest.raises(ValueError, match="equal lengths"):
        fns.dispatch_fn(_ThreeRanks(), data, data[:5])


def test_a_plain_worker_never_joins_a_process_group(monkeypatch, clean_world):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "9")  # nothing listens there: joining would wait for the timeout
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    worker = DoubleWorker()
    assert (worker.rank, worker.world_size) == (1, 2) and not dist.is_initialized()
    monkeypatch.delenv("MASTER_PORT")
    with pytest.raises(RuntimeError, match=r"rank 1 of WORLD_SIZE=2 but \['MASTER_PORT'\] are not set"):
        worker.init_process_group()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    DoubleWorker().init_process_group()  # one rank outside any group: runs without torch.distributed
    assert not dist.is_initialized()
