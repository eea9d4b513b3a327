"""Rollout-shaped DataProtos for the reward-manager tests; a loopback server for the sandbox tests."""

import socket
import threading

import pytest
import torch

from verl.protocol import DataProto
from verl.utils.tiny_model import build_tiny_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_tiny_tokenizer()


def make_rollout_batch(tokenizer, prompts, responses, data_sources, truths, prompt_len=24, response_len=16,
                       extra_infos=None):
    """Left-padded prompts, right-padded responses (EOS appended when it fits), the mask, non-tensor columns."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    p_rows, r_rows, m_rows = [], [], []
    for prompt, response in zip(prompts, responses):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"][-prompt_len:]
        r_ids = tokenizer(response, add_special_tokens=False)["input_ids"] if response else []
        r_ids = (r_ids + [eos])[:response_len] if response else []
        p_rows.append([pad] * (prompt_len - len(p_ids)) + p_ids)
        r_rows.append(r_ids + [pad] * (response_len - len(r_ids)))
        m_rows.append([0] * (prompt_len - len(p_ids)) + [1] * len(p_ids) + [1] * len(r_ids) + [0] * (response_len - len(r_ids)))
    prompts_t, responses_t = torch.tensor(p_rows), torch.tensor(r_rows)
    return DataProto.from_dict(
        tensors={
            "prompts": prompts_t,
            "responses": responses_t,
            "input_ids": torch.cat([prompts_t, responses_t], dim=1),
            "attention_mask": torch.tensor(m_rows),
        },
        non_tensors={
            "data_source": list(data_sources),
            "reward_model": [{"style": "rule", "ground_truth": t} for t in truths],
            "extra_info": extra_infos if extra_infos is not None else [{"index": i} for i in range(len(prompts))],
        },
    )


@pytest.fixture
def rollout_batch():
    return make_rollout_batch


@pytest.fixture
def local_server():
    """A TCP server on the host's loopback that accepts connections (to prove the sandbox cannot reach it)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    srv.close()
