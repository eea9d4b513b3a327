"""RolloutConfig: verl's key names, validation naming key and fix, dict/omegaconf input."""

import pytest
from omegaconf import OmegaConf

from verl.rollout import RolloutConfig, ValKwargs, rollout_config_from_mapping


def test_defaults_follow_verl_and_validate():
    cfg = RolloutConfig().validate()
    assert (cfg.name, cfg.temperature, cfg.top_k, cfg.top_p, cfg.do_sample, cfg.n) == ("native", 1.0, -1, 1.0, True, 1)
    assert cfg.val_kwargs == ValKwargs(top_k=-1, top_p=1.0, temperature=0.0, n=1, do_sample=False)
    assert set(cfg.to_dict()) >= {
        "prompt_length", "response_length", "ignore_eos", "calculate_log_probs", "max_num_seqs",
        "max_num_batched_tokens", "gpu_memory_utilization", "enforce_eager", "free_cache_engine", "val_kwargs",
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"temperature": 0.0}, r"temperature=0.0 with do_sample=true.*do_sample=false"),
        ({"temperature": -1.0, "do_sample": False}, r"temperature=-1.0 must be >= 0"),
        ({"top_k": 0}, r"top_k=0.*-1 to turn top-k off"),
        ({"top_p": 0.0}, r"top_p=0.0 must be in \(0, 1\]"),
        ({"name": "tgi"}, r"name='tgi'.*\['native', 'hf', 'vllm'\]"),
        ({"name": "sglang"}, r"name='sglang'.*pins torch 2.14.1"),
        ({"dtype": "fp8"}, r"dtype='fp8'"),
        ({"response_length": 0}, r"response_length=0 must be >= 1"),
        ({"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization=1.5"),
        ({"max_model_len": 8, "prompt_length": 16}, r"max_model_len=8"),
        ({"n": 4, "do_sample": False}, r"n=4 with do_sample=false"),
        ({"val_kwargs": ValKwargs(do_sample=True, temperature=0.0)}, r"val_kwargs.temperature=0.0"),
    ],
)
def test_bad_values_name_the_key_and_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        RolloutConfig(**overrides).validate()


def test_vllm_missing_is_refused_with_the_install_command(monkeypatch):
    import verl.rollout.vllm as vllm_pkg

    monkeypatch.setattr(vllm_pkg, "vllm_available", lambda: False)
    with pytest.raises(ValueError, match=r"name=vllm but vLLM is not installed.*pip install.*rollout.name=native"):
        RolloutConfig(name="vllm").validate()


def test_from_dict_and_omegaconf_with_nested_val_kwargs():
    raw = {"name": "hf", "temperature": 0.7, "val_kwargs": {"do_sample": True, "temperature": 0.5, "n": 2}}
    for mapping in (raw, OmegaConf.create(raw)):
        cfg = rollout_config_from_mapping(mapping)
        assert cfg.name == "hf" and cfg.temperature == 0.7
        assert cfg.val_kwargs == ValKwargs(do_sample=True, temperature=0.5, n=2)
    same = RolloutConfig(name="hf")
    assert rollout_config_from_mapping(same) is same


def test_unknown_keys_suggest_the_close_match():
    with pytest.raises(KeyError, match=r"rollout\.temprature; did you mean 'temperature'"):
        rollout_config_from_mapping({"temprature": 1.0})
    with pytest.raises(KeyError, match=r"val_kwargs\.topk; did you mean 'top_k'"):
        rollout_config_from_mapping({"val_kwargs": {"topk": 3}})
    with pytest.raises(TypeError, match="RolloutConfig or a mapping"):
        rollout_config_from_mapping(["name"])
