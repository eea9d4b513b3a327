"""Multi-node through an existing Ray cluster: two ``ray start`` nodes on this host, ``main_ppo`` joins them.

This is docs/start/multinode.md run for real: a head node and a worker node (each its own raylet, node id and
ports; one CPU each so each holds exactly one worker process), then ``python -m verl.trainer.main_ppo ...
trainer.nnodes=2 trainer.n_gpus_per_node=1 ray_init.address=<head>`` in a subprocess. The nodes are started
with ``ray start --block`` and stopped by signalling exactly those two processes (each tears its own node
down); nothing else on the machine is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
sys.path.insert(0, os.path.dirname(__file__))
from conftest import base_overrides  # noqa: E402
from tests.helpers.net import free_port

ROOT = Path(__file__).resolve().parents[2]
RAY_BIN = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 90



def node_ports() -> list[str]:
    """Every port a node binds, chosen free, so two nodes on one host (and other tests' clusters) never clash."""
    flags = ("--node-manager-port", "--object-manager-port", "--metrics-export-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port")
    return [f"{flag}={free_port()}" for flag in flags]


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("RAY_ADDRESS", None)
    return env


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in its own session: it owns the node's processes and stops them on SIGTERM."""
    cmd = [str(RAY_BIN), "start", "--block", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", *node_ports(),
           *args]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ray_env(), start_new_session=True)


def stop_node(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # its reaper process then takes the node's children down with it
            proc.wait(timeout=10)


def wait_for_nodes(address: str, count: int, procs: list[subprocess.Popen], logs: list[Path]) -> list[str]:
    """Connect to the cluster and wait until ``count`` nodes are alive; returns their ids."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                pytest.fail(f"`ray start` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError:
                time.sleep(0.5)
                continue
        alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        if len(alive) >= count:
            return alive
        time.sleep(0.5)
    pytest.fail(f"the cluster at {address} did not reach {count} nodes in {START_TIMEOUT_S}s:\n"
                + "\n".join(log.read_text()[-2000:] for log in logs))


def worker_nodes(class_name: str) -> list[str]:
    """Node ids of every actor of ``class_name`` the cluster has run (finished ones stay in the GCS table)."""
    from ray._private.state import actors

    return [a["Address"]["NodeID"] for a in actors().values() if a["ActorClassName"].endswith(class_name)]


@pytest.mark.slow  # ~40 s: two `ray start` nodes
def test_grpo_step_on_a_two_node_ray_cluster(ppo_fixture, tmp_path):
    if ray.is_initialized():
        pytest.skip("needs this process free of a Ray connection (it connects to the test's own cluster)")
    temp_dir = tempfile.mkdtemp(prefix="ray2n_", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    head_port = free_port()
    address = f"127.0.0.1:{head_port}"
    logs = [tmp_path / "head.log", tmp_path / "worker.log"]
    procs = [start_node(["--head", f"--port={head_port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                         f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}"], logs[0])]
    try:
        procs.append(start_node([f"--address={address}", "--node-ip-address=127.0.0.1"], logs[1]))
        node_ids = wait_for_nodes(address, 2, procs, logs)
        assert len(set(node_ids)) == 2

        out = tmp_path / "out"
        argv = base_overrides(ppo_fixture, out, "algorithm.adv_estimator=grpo", "trainer.total_training_steps=1",
                              "trainer.test_freq=-1", "trainer.logger=[file]", "trainer.nnodes=2",
                              "trainer.n_gpus_per_node=1", f"ray_init.address={address}")
        run = subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *argv], cwd=ROOT, env=ray_env(),
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1] and rows[0]["training/global_step"] == 1
        assert rows[0]["actor/grad_norm"] >= 0 and rows[0]["timing_s/update_actor"] > 0

        used = worker_nodes("ActorRolloutRefWorker")
        assert len(used) == 2, f"expected one policy worker per node, the cluster ran {len(used)}"
        assert set(used) == set(node_ids), "the two ranks ran on the two distinct nodes"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(procs):
            stop_node(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
