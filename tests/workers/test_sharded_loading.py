"""Loading a model over 2 ranks: each rank builds it on the meta device and reads only its own shards from the
safetensors file, so the host holds about one model's weights in all, not one per rank (nor a full copy on rank 0
while it sends); the shards equal a plain load. A checkpoint without safetensors files falls back to rank 0 reading
it and sending the shards."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.helpers.net import free_port
from verl.workers.config import FSDPConfig
from verl.workers.fsdp import build_sharded_model, full_state_dict_iter, load_hf_model


def _memory() -> tuple[int, int]:
    """``(resident, private)`` bytes: all resident pages, and those not backed by a file (the resident pages of the
    memory-mapped checkpoint are page cache, shared with every process reading the file)."""
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    page = os.sysconf("SC_PAGE_SIZE")
    return int(fields[1]) * page, (int(fields[1]) - int(fields[2])) * page


class _PeakMemory:
    """The largest resident / private memory seen while the block runs (sampled every millisecond), minus before."""

    def __enter__(self):
        self.start = _memory()
        self.peak = list(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = [max(p, m) for p, m in zip(self.peak, _memory())]
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.growth = [max(p, m) - s for p, m, s in zip(self.peak, _memory(), self.start)]


def _release_freed_heap() -> None:
    """Return the heap the parent freed before the fork to the OS, so allocations here show as growth (glibc)."""
    import ctypes

    libc = ctypes.CDLL(None)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _load(rank: int, port: int, model_dir: str, bin_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    from verl.workers import fsdp

    loads = []
    load_hf_model = fsdp.load_hf_model
    fsdp.load_hf_model = lambda *a, **kw: loads.append(kw["on_meta"]) or load_hf_model(*a, **kw)
    try:
        _release_freed_heap()
        cfg = type("M", (), {"path": model_dir})()
        with _PeakMemory() as mem:
            model = build_sharded_model(cfg, "causal_lm", FSDPConfig(), 2, torch.device("cpu"), train=True)
        grown = [torch.zeros(2), torch.zeros(2)]
        dist.all_gather(grown, torch.tensor(mem.growth, dtype=torch.float32))
        assert loads == [True], loads  # no rank loads the full checkpoint: both build on the meta device
        weights = {name: t.clone() for name, t in full_state_dict_iter(model)}
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        # a value model: its fresh head is drawn in full from fsdp_config.seed on each rank and sliced
        value = dict(full_state_dict_iter(build_sharded_model(cfg, "value", FSDPConfig(), 2, torch.device("cpu"),
                                                              train=False)))
        # no safetensors file (pytorch_model.bin): rank 0 reads it and sends the shards
        loads.clear()
        bin_model = build_sharded_model(type("M", (), {"path": bin_dir})(), "causal_lm", FSDPConfig(), 2,
                                        torch.device("cpu"), train=True)
        assert loads == [rank != 0], loads
        from_bin = dict(full_state_dict_iter(bin_model))
        bin_buffers = {name: b.clone() for name, b in bin_model.named_buffers()}
        if rank == 0:
            torch.save({"growth": [g.tolist() for g in grown], "weights": weights, "buffers": buffers,
                        "value": value, "bin": from_bin, "bin_buffers": bin_buffers}, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def model_80mb(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    # saved in bf16 like most HF checkpoints; the actor's master weights are fp32 (80 MiB)
    return build_tiny_model(tmp_path_factory.mktemp("mid"), build_tiny_tokenizer(), hidden_size=512, num_layers=6,
                            num_heads=8, num_kv_heads=8, intermediate_size=1536, tie_word_embeddings=False,
                            torch_dtype="bfloat16")


@pytest.fixture(scope="module")
def bin_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its weights in ``pytorch_model.bin`` instead of safetensors."""
    import shutil

    from safetensors.torch import load_file

    path = tmp_path_factory.mktemp("bin") / "model"
    shutil.copytree(tiny_model_dir, path)
    torch.save(load_file(path / "model.safetensors"), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    return str(path)


def test_two_ranks_hold_about_one_model_while_loading(model_80mb, bin_model_dir, tmp_path):
    import transformers  # noqa: F401  (imported before the fork, so no rank's growth is module code)

    reference = load_hf_model(model_80mb)
    model_bytes = sum(p.numel() * p.element_size() for p in reference.parameters())
    out = str(tmp_path / "out.pt")
    mp.start_processes(_load, args=(free_port(), model_80mb, bin_model_dir, out), nprocs=2, start_method="fork")
    result = torch.load(out, weights_only=False)
    bin_reference = load_hf_model(bin_model_dir)
    for name, tensor in bin_reference.state_dict().items():
        torch.testing.assert_close(result["bin"][name], tensor, rtol=0, atol=0, msg=name)
    for name, buffer in bin_reference.named_buffers():
        torch.testing.assert_close(result["bin_buffers"][name], buffer, rtol=0, atol=0, msg=name)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(result["weights"][name], tensor, rtol=0, atol=0, msg=name)
    for name, buffer in reference.named_buffers():
        torch.testing.assert_close(result["buffers"][name], buffer, rtol=0, atol=0, msg=name)
    for name, tensor in load_hf_model(model_80mb, kind="value", init_seed=FSDPConfig().seed).state_dict().items():
        torch.testing.assert_close(result["value"][name], tensor, rtol=0, atol=0, msg=name)
    (res0, priv0), (res1, priv1) = result["growth"]
    mib = 2**20
    print(f"model {model_bytes / mib:.0f} MiB; peak growth while loading: rank 0 {res0 / mib:.0f} MiB resident "
          f"({priv0 / mib:.0f} MiB private), rank 1 {res1 / mib:.0f} MiB ({priv1 / mib:.0f} MiB private)")
    # Each rank's private memory is its half of the fp32 model; the rest of its resident set is the pages of the
    # memory-mapped bf16 file it read (page cache, shared). Measured alone: 42-43 MiB private per rank (~30 MiB of
    # file pages). Before, rank 0 read the whole checkpoint into fp32 and sent the shards: 123 MiB private on rank
    # 0, 46 MiB on rank 1.
    assert priv0 + priv1 < 1.3 * model_bytes, "the two ranks held more than about one model in private memory"
    assert max(priv0, priv1) < 0.75 * model_bytes, "a rank held about a full copy of the model"
