"""The watchdog on worker calls: a worker that never returns is reported naming worker, rank and method, with
its threads' stacks, and the driver gets an error instead of hanging (local mode and Ray mode)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from verl.single_controller.base import (
    ClassWithInitArgs,
    Dispatch,
    Worker,
    WorkerCallTimeoutError,
    create_colocated_worker_cls,
    register,
)
from verl.single_controller.local import LocalWorkerGroup


class SleepyWorker(Worker):
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def quick(self):
        return self.rank

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def sleep_forever_on(self, rank: int):
        if self.rank == rank:
            time.sleep(10**6)  # a worker stuck inside a method
        return self.rank


def test_local_stuck_call_is_reported_and_interrupted(capfd):
    group = LocalWorkerGroup(ClassWithInitArgs(SleepyWorker), name_prefix="actor_rollout", call_timeout_s=1.5)
    try:
        assert group.quick() == [0]
        start = time.monotonic()
        with pytest.raises(WorkerCallTimeoutError) as err:
            group.sleep_forever_on(0)
        assert time.monotonic() - start < 5.0
        text = str(err.value)
        assert "worker actor_rollout_0 (rank 0) did not return from sleep_forever_on within 1.5 s" in text
        assert "trainer.worker_call_timeout_s" in text
        assert "in sleep_forever_on" in text and "time.sleep(10**6)" in text  # the stuck frame
        printed = capfd.readouterr().err
        assert "every thread of this process" in printed.lower() and "sleep_forever_on" in printed
        assert group.quick() == [0], "the group still works after the interrupted call"
    finally:
        group.kill()


def test_local_watchdog_off_and_inherited_by_role_views():
    plain = LocalWorkerGroup(ClassWithInitArgs(SleepyWorker), call_timeout_s=None)
    assert plain.quick() == [0] and plain.call_timeout_s is None
    plain.kill()
    colocated = create_colocated_worker_cls({"actor": ClassWithInitArgs(SleepyWorker)})
    group = LocalWorkerGroup(colocated, name_prefix="pool", call_timeout_s=1.0)
    try:
        view = group.spawn(["actor"])["actor"]
        assert view.call_timeout_s == 1.0
        with pytest.raises(WorkerCallTimeoutError, match="actor_sleep_forever_on"):
            view.sleep_forever_on(0)
    finally:
        group.kill()


STUCK_IN_NATIVE_CODE = textwrap.dedent("""
    import re, sys
    from verl.single_controller.base import ClassWithInitArgs, Dispatch, Worker, register
    import verl.single_controller.local.worker_group as lwg

    lwg.HARD_EXIT_GRACE_S = 1.0

    class Regex(Worker):
        @register(dispatch_mode=Dispatch.ONE_TO_ALL)
        def backtrack(self):
            return re.match(r"(a+)+$", "a" * 40 + "b")  # exponential, inside C, the GIL held: no signal gets in

    group = lwg.LocalWorkerGroup(ClassWithInitArgs(Regex), name_prefix="actor", call_timeout_s=1.0)
    group.backtrack()
    print("returned")
""")


def test_local_call_stuck_in_native_code_ends_the_process(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_IN_NATIVE_CODE)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "returned" not in proc.stdout
    assert time.monotonic() - start < 60
    assert "backtrack" in proc.stderr  # the stuck frame, dumped by faulthandler from C


# ---------------------------------------------------------------------------------------------- Ray mode


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_stuck_rank_is_named_with_its_stacks(ray_cluster):
    from ray import cloudpickle

    from verl.single_controller.ray import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pool = RayResourcePool(process_on_nodes=[2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(SleepyWorker), name_prefix="actor_rollout", call_timeout_s=120)
    try:
        assert group.quick() == [0, 1]  # started (importing torch takes a while on a small machine)
        group.call_timeout_s = 3.0
        start = time.monotonic()
        with pytest.raises(WorkerCallTimeoutError) as err:
            group.sleep_forever_on(1)
        assert time.monotonic() - start < 3.0 + 20, "stack dumps are bounded too"
        text = str(err.value)
        assert "worker actor_rollout_1 (rank 1) did not return from sleep_forever_on within 3 s" in text
        assert "1 of 2 ranks returned" in text
        assert "--- stacks of actor_rollout_1 (rank 1) ---" in text
        assert "in sleep_forever_on" in text  # the stuck worker's own frame, from its process
    finally:
        group.kill()
        pool.remove()
