"""The SFT trainer with Ulysses sequence parallelism: 2 gloo ranks in one SP group (data-parallel size 1) train
like one rank: same losses, gradient norms, validation loss and weights."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.multiprocessing as mp

from tests.sft.conftest import qa_rows
from tests.sft.test_sft_trainer import sft_args
from tests.helpers.net import free_port
from verl.trainer.fsdp_sft_trainer import main
from verl.utils.tracking import read_metrics

STEPS = ["trainer.total_training_steps=2", "trainer.test_freq=2", "trainer.save_freq=-1"]


def _rank(rank: int, port: int, argv: list[str]) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from verl.workers.parallel import ulysses

    calls = []
    all_to_all = ulysses._all_to_all
    ulysses._all_to_all = lambda *args: calls.append(1) or all_to_all(*args)  # count the attention exchanges
    main(argv)
    assert calls, "the SFT forward did not run sequence-parallel attention"


def test_sft_sp2_equals_one_rank(tiny_model_dir, tmp_path):
    rows = qa_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:3]), tmp_path / "val.parquet")
    files = (str(tmp_path / "train.parquet"), str(tmp_path / "val.parquet"))
    one, two = tmp_path / "one", tmp_path / "two"
    mp.start_processes(_rank, args=(free_port(), sft_args(tiny_model_dir, files, two, *STEPS,
                                                      "ulysses_sequence_parallel_size=2")),
                       nprocs=2, start_method="fork")
    main(sft_args(tiny_model_dir, files, one, *STEPS))
    r1, r2 = read_metrics(str(one / "metrics.jsonl")), read_metrics(str(two / "metrics.jsonl"))
    assert len(r1) == len(r2) == 2
    for key in ("train/loss", "train/grad_norm", "train/target_tokens"):
        assert [r[key] for r in r2] == pytest.approx([r[key] for r in r1], rel=1e-5), key
    assert r2[-1]["val/loss"] == pytest.approx(r1[-1]["val/loss"], rel=1e-5)
