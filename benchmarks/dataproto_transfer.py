"""What sending a DataProto costs: pickling size and time of a PPO-sized batch, the way Ray moves it.

Workload: 256 sequences of 2048 tokens (1024 prompt + 1024 response): ``input_ids``, ``attention_mask``,
``position_ids`` (int64, 256 x 2048), ``prompts``/``responses`` (int64, 256 x 1024), six float32 per-token
columns (log-probs, advantages, returns, scores, rewards, mask; 256 x 1024) and three non-tensor columns (uid,
data source, ground truth). Reported (median of ``--repeats``): with pickle protocol 5 and out-of-band buffers
(what Ray's object store does) the in-band payload bytes, the out-of-band bytes and the dumps / loads times;
with plain in-band pickling the total bytes and the dumps / loads times.

    python benchmarks/dataproto_transfer.py [--repeats 20] [--rows 256]
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time

import numpy as np
import torch

from verl.protocol import DataProto


def make_batch(rows: int, prompt: int = 1024, response: int = 1024) -> DataProto:
    g = torch.Generator().manual_seed(0)
    total = prompt + response
    tensors = {
        "input_ids": torch.randint(0, 150_000, (rows, total), generator=g),
        "attention_mask": torch.ones(rows, total, dtype=torch.int64),
        "position_ids": torch.arange(total).repeat(rows, 1),
        "prompts": torch.randint(0, 150_000, (rows, prompt), generator=g),
        "responses": torch.randint(0, 150_000, (rows, response), generator=g),
    }
    for key in ("old_log_probs", "ref_log_prob", "advantages", "returns", "token_level_scores", "response_mask"):
        tensors[key] = torch.randn(rows, response, generator=g)
    non_tensors = {
        "uid": np.array([f"step-3-{i // 8}" for i in range(rows)], dtype=object),
        "data_source": np.array(["openai/gsm8k"] * rows, dtype=object),
        "reward_model": np.array([{"style": "rule", "ground_truth": str(i)} for i in range(rows)], dtype=object),
    }
    return DataProto.from_dict(tensors, non_tensors, meta_info={"temperature": 1.0, "global_steps": 3})


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 2)


def measure(rows: int, repeats: int) -> dict:
    data = make_batch(rows)
    buffers: list = []
    payload = pickle.dumps(data, protocol=5, buffer_callback=buffers.append)
    raw = [b.raw() for b in buffers]
    inband = pickle.dumps(data, protocol=5)
    back = pickle.loads(payload, buffers=raw)
    assert all(torch.equal(back.batch[k], data.batch[k]) for k in data.batch.keys())
    return {
        "rows": rows, "tensor_bytes": sum(t.numel() * t.element_size() for t in data.batch.values()),
        "oob_payload_bytes": len(payload), "oob_buffer_bytes": sum(r.nbytes for r in raw),
        "oob_dumps_ms": _median_ms(lambda: pickle.dumps(data, protocol=5, buffer_callback=lambda b: None), repeats),
        "oob_loads_ms": _median_ms(lambda: pickle.loads(payload, buffers=raw), repeats),
        "inband_bytes": len(inband),
        "inband_dumps_ms": _median_ms(lambda: pickle.dumps(data, protocol=5), repeats),
        "inband_loads_ms": _median_ms(lambda: pickle.loads(inband), repeats),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    print(json.dumps(measure(args.rows, args.repeats)))


if __name__ == "__main__":
    main()
