"""Loading the reward function a config names: custom functions by file path, managers by name."""

import pickle
import textwrap

import pytest
import torch
from omegaconf import OmegaConf

from verl.reward import (
    CustomRewardFunction,
    DAPORewardManager,
    NaiveRewardManager,
    PrimeRewardManager,
    compute_reward,
    get_custom_reward_fn,
    load_reward_manager,
)

USER_FILE = textwrap.dedent(
    '''
    import asyncio

    def my_score(data_source, solution_str, ground_truth, extra_info=None, scale=1.0):
        return {"score": scale * float(solution_str.strip() == ground_truth), "length": len(solution_str)}

    async def my_async_score(data_source, solution_str, ground_truth, extra_info=None, scale=1.0):
        await asyncio.sleep(0)
        return scale * float(solution_str.strip() == ground_truth)

    def my_batch_score(data_sources, solution_strs, ground_truths, extra_infos, scale=1.0):
        return [scale * float(s.strip() == g) for s, g in zip(solution_strs, ground_truths)]

    NOT_A_FUNCTION = 3
    '''
)


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text(USER_FILE)
    return str(path)


def config(user_file=None, name="my_score", manager="naive", reward_kwargs=None, **extra):
    cfg = {
        "data": {"reward_fn_key": "data_source", "max_response_length": 16},
        "reward_model": {"enable": False, "reward_manager": manager, **extra},
        "custom_reward_function": {"path": user_file, "name": name, "reward_kwargs": reward_kwargs or {}},
    }
    return cfg


def test_get_custom_reward_fn_binds_reward_kwargs(user_file):
    fn = get_custom_reward_fn(config(user_file, reward_kwargs={"scale": 3.0}))
    assert isinstance(fn, CustomRewardFunction) and not fn.is_async
    assert fn("src", "42", "42") == {"score": 3.0, "length": 2}
    assert get_custom_reward_fn(config(None)) is None  # no path: use default_compute_score
    clone = pickle.loads(pickle.dumps(fn))  # workers in other processes reload it from the file
    assert clone("src", "41", "42") == {"score": 0.0, "length": 2} and clone.reward_kwargs == {"scale": 3.0}


def test_custom_reward_fn_errors_are_clear(user_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="custom_reward_function.path"):
        get_custom_reward_fn(config(str(tmp_path / "missing.py")))
    with pytest.raises(AttributeError, match="my_score"):  # lists what the file does define
        get_custom_reward_fn(config(user_file, name="nope"))
    with pytest.raises(TypeError, match="not a function"):
        get_custom_reward_fn(config(user_file, name="NOT_A_FUNCTION"))
    bad = config(user_file)
    bad["custom_reward_function"]["rewards_kwargs"] = {}
    with pytest.raises(ValueError, match="rewards_kwargs"):
        get_custom_reward_fn(bad)


@pytest.mark.parametrize("as_omegaconf", [False, True])
def test_load_reward_manager_with_custom_fn(user_file, tokenizer, rollout_batch, as_omegaconf):
    cfg = config(user_file, reward_kwargs={"scale": 2.0})
    cfg = OmegaConf.create(cfg) if as_omegaconf else cfg
    manager = load_reward_manager(cfg, tokenizer, num_examine=0)
    assert isinstance(manager, NaiveRewardManager)
    batch = rollout_batch(tokenizer, ["q", "q"], ["42", "7"], ["s", "s"], ["42", "42"])
    scores, extra = compute_reward(batch, manager)
    assert scores.sum(-1).tolist() == [2.0, 0.0]
    assert extra["length"] == [2, 1]


def test_load_async_and_batch_custom_fns(user_file, tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, ["q", "q"], ["42", "7"], ["s", "s"], ["42", "42"])
    naive = load_reward_manager(config(user_file, name="my_async_score", reward_kwargs={"scale": 5.0}), tokenizer)
    assert naive.compute_score.is_async
    assert naive(batch).sum(-1).tolist() == [5.0, 0.0]
    batched = load_reward_manager(config(user_file, name="my_batch_score", manager="batch"), tokenizer)
    assert batched(batch).sum(-1).tolist() == [1.0, 0.0]


def test_load_prime_and_dapo_from_config(user_file, tokenizer, rollout_batch):
    cfg = config(user_file, manager="prime", reward_kwargs={"scale": 2.0})
    cfg["reward_model"]["reward_kwargs"] = {"timeout_s": 5.0, "num_workers": 2}
    prime = load_reward_manager(cfg, tokenizer)
    assert isinstance(prime, PrimeRewardManager) and prime.timeout_s == 5.0
    # an async custom function runs in the worker processes too
    cfg["custom_reward_function"]["name"] = "my_async_score"
    batch = rollout_batch(tokenizer, ["q", "q"], ["42", "7"], ["s", "s"], ["42", "42"])
    assert load_reward_manager(cfg, tokenizer)(batch).sum(-1).tolist() == [2.0, 0.0]

    dapo_cfg = config(None, manager="dapo", overlong_buffer={"enable": True, "len": 4, "penalty_factor": 1.0})
    dapo = load_reward_manager(dapo_cfg, tokenizer)
    assert isinstance(dapo, DAPORewardManager)
    assert dapo.max_resp_len == 16 and dapo.overlong_buffer_cfg.len == 4  # from data.max_response_length


def test_load_reward_manager_rejects_unknown_kwargs(tokenizer):
    cfg = config(None, manager="naive")
    cfg["reward_model"]["reward_kwargs"] = {"num_workers": 3}  # prime's, not naive's
    with pytest.raises(TypeError, match="num_workers"):
        load_reward_manager(cfg, tokenizer)
    cfg["reward_model"]["reward_kwargs"] = {"timeout_s": 3}  # every manager's time limit
    assert load_reward_manager(cfg, tokenizer).timeout_s == 3
    with pytest.raises(ValueError, match="reward_manager"):
        load_reward_manager(config(None, manager="fancy"), tokenizer)


def test_compute_reward_with_plain_callable(tokenizer, rollout_batch):
    batch = rollout_batch(tokenizer, ["q"], ["a"], ["s"], ["a"])

    def legacy(data):
        return torch.ones_like(data.batch["responses"], dtype=torch.float32)

    scores, extra = compute_reward(batch, legacy)
    assert scores.shape == batch.batch["responses"].shape and extra == {}
