"""Tiny models and rollout-shaped batches for the worker tests."""

import os

import pytest
import torch

from verl import DataProto


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"), tok, arch="qwen2", num_layers=2, seed=0)


def rollout_batch(n: int = 6, prompt_len: int = 10, response_len: int = 7, vocab: int = 400, seed: int = 0,
                  pad_id: int = 0) -> DataProto:
    """Left-padded prompts of varying length + right-padded responses of varying length, as rollout returns."""
    g = torch.Generator().manual_seed(seed)
    prompts = torch.full((n, prompt_len), pad_id)
    responses = torch.full((n, response_len), pad_id)
    p_mask = torch.zeros(n, prompt_len, dtype=torch.long)
    r_mask = torch.zeros(n, response_len, dtype=torch.long)
    for i in range(n):
        p = int(torch.randint(2, prompt_len + 1, (1,), generator=g))
        r = int(torch.randint(1, response_len + 1, (1,), generator=g))
        prompts[i, prompt_len - p :] = torch.randint(3, vocab, (p,), generator=g)
        p_mask[i, prompt_len - p :] = 1
        responses[i, :r] = torch.randint(3, vocab, (r,), generator=g)
        r_mask[i, :r] = 1
    attention_mask = torch.cat([p_mask, r_mask], dim=-1)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return DataProto.from_dict({
        "prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], -1),
        "attention_mask": attention_mask, "position_ids": position_ids, "response_mask": r_mask,
    }, {"uid": [str(i // 2) for i in range(n)]})


@pytest.fixture
def make_batch():
    return rollout_batch


@pytest.fixture(scope="module")
def one_rank_world():
    """RANK/WORLD_SIZE/MASTER_* as a worker group sets them: ``Worker.__init__`` joins a one-rank world."""
    import torch.distributed as dist

    from verl.single_controller.base.worker import find_free_port

    if dist.is_initialized():
        pytest.skip("a torch.distributed world is already initialised in this process")
    saved = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(find_free_port()))
    yield
    if dist.is_initialized():
        dist.destroy_process_group()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
