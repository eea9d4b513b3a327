"""Fixtures for rollout tests: tiny random Llama-family models and left-padded prompt batches."""

import pytest
import torch

from verl import DataProto
from verl.models.testing import tiny_model

EOS, PAD = 2, 0


def left_padded_prompts(batch: int = 6, width: int = 12, vocab: int = 256, seed: int = 0, min_len: int = 3,
                        meta_info: dict | None = None) -> DataProto:
    """Random prompts of random lengths in ``[min_len, width]``, left-padded with PAD, ids >= 3 (no EOS)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, width), generator=g)
    lengths = torch.randint(min_len, width + 1, (batch,), generator=g)
    mask = (torch.arange(width)[None, :] >= (width - lengths)[:, None]).long()
    ids = ids * mask + PAD * (1 - mask)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    meta = {"eos_token_id": EOS, "pad_token_id": PAD} if meta_info is None else meta_info
    return DataProto.from_dict({"input_ids": ids, "attention_mask": mask, "position_ids": positions},
                               meta_info=meta)


@pytest.fixture(scope="session")
def make_prompts():
    return left_padded_prompts


@pytest.fixture(scope="module")
def qwen2_model():
    return tiny_model("qwen2", seed=0)


def base_config(**overrides) -> dict:
    cfg = dict(name="native", dtype="float32", prompt_length=12, response_length=16, do_sample=False,
               calculate_log_probs=True, max_num_seqs=64, finished_check_interval=4)
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="session")
def rollout_config():
    return base_config
