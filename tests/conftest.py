"""Shared test set-up: GPU tests are skipped (never faked) where no accelerator is present."""

import os

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Inductor compiles on a thread pool created on first use; a worker the tests fork afterwards (gloo ranks with
# start_method="fork") inherits the pool without its threads and waits forever for its compiles. Compile in
# the calling thread instead.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")


_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True, scope="module")
def _no_process_group_left_behind():
    """A module that leaves a torch.distributed world (or its rank variables) in the pytest process would hand it
    to the next module's forked workers ("initialize the default process group twice"); end it after each module."""
    before = {key: os.environ.get(key) for key in _DIST_ENV}
    yield
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA/ROCm GPU; none present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_DOC_RUNNER = r'''
import json, os, subprocess, sys
blocks = json.loads(open(sys.argv[1]).read())
env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
namespace = {"__name__": "__main__"}
for i, (lang, code) in enumerate(blocks):
    print(f"--- block {i} ({lang})", flush=True)
    if lang == "python":
        exec(compile(code, f"<block {i}>", "exec"), namespace)
    else:
        subprocess.run(["bash", "-euo", "pipefail", "-c", code], check=True, env=env)
    sys.stdout.flush()
'''


@pytest.fixture
def run_doc_page(tmp_path):
    """Run a docs page as written: its python and bash blocks in order, in one fresh directory (python blocks
    share one namespace; bash blocks see this interpreter first on PATH); assert each expected string is printed
    (so a page that silently does nothing fails)."""
    import json
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def run(page: str, expected: list[str], timeout: int = 400) -> str:
        found = re.findall(r"```(python|bash)\n(.*?)```", (root / page).read_text(), re.S)
        assert found, f"{page} has no python/bash blocks"
        (tmp_path / "blocks.json").write_text(json.dumps(found))
        (tmp_path / "runner.py").write_text(_DOC_RUNNER)
        env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "runner.py", "blocks.json"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout, env=env, start_new_session=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        for text in expected:
            assert text in proc.stdout, f"{page}: expected {text!r} in output:\n{proc.stdout[-3000:]}"
        return proc.stdout

    return run
