"""Tiny models and rollout-shaped batches for the worker tests."""

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
