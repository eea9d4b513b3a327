"""verl's commonly imported public names exist here, at verl's module paths, and are the real implementations."""

import importlib

import numpy as np
import pytest
import torch

NAMES = {
    "verl.utils.dataset.rl_dataset": ["RLHFDataset", "collate_fn"],
    "verl.utils.dataset.sft_dataset": ["SFTDataset"],
    "verl.workers.reward_manager": ["register", "get_reward_manager_cls", "NaiveRewardManager", "BatchRewardManager",
                                    "DAPORewardManager", "PrimeRewardManager", "AbstractRewardManager"],
    "verl.trainer.ppo.reward": ["load_reward_manager", "compute_reward", "get_custom_reward_fn"],
    "verl.trainer.main_ppo": ["create_rl_dataset", "create_rl_sampler"],
    "verl.utils.hf_tokenizer": ["hf_tokenizer"],
    "verl.utils.fs": ["copy_to_local"],
    "verl.utils.torch_functional": ["masked_mean", "masked_sum", "masked_whiten", "entropy_from_logits", "clip_by_value"],
    "verl.utils.metric": ["reduce_metrics"],
    "verl.base_config": ["BaseConfig"],
    "verl.utils.config": ["omega_conf_to_dataclass"],
    "verl.trainer.config": ["AlgoConfig"],
    "verl.protocol": ["DataProto", "pad_dataproto_to_divisor", "unpad_dataproto"],
    "verl.trainer.ppo.metric_utils": ["compute_throughout_metrics", "bootstrap_metric", "calc_maj_val",
                                      "compute_data_metrics", "compute_timing_metrics", "process_validation_metrics"],
    "verl.trainer.ppo.core_algos": ["register_policy_loss", "get_policy_loss_fn", "register_adv_est",
                                    "get_adv_estimator_fn", "agg_loss", "compute_value_loss", "AdvantageEstimator"],
    "verl.utils.reward_score": ["default_compute_score"],
    "verl.tools.base_tool": ["BaseTool"],
    "verl.tools.schemas": ["OpenAIFunctionToolSchema", "OpenAIFunctionSchema", "OpenAIFunctionParametersSchema",
                           "OpenAIFunctionPropertySchema", "OpenAIFunctionParsedSchema", "OpenAIFunctionCallSchema",
                           "OpenAIFunctionToolCall", "ToolResponse"],
    "verl.tools.gsm8k_tool": ["Gsm8kTool"],
    "verl.tools.utils.tool_registry": ["initialize_tools_from_config", "get_tool_class"],
    "verl.interactions.base": ["BaseInteraction"],
    "verl.interactions.gsm8k_interaction": ["Gsm8kInteraction"],
    "verl.interactions.utils.interaction_registry": ["initialize_interactions_from_config"],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(NAMES))
def test_verl_names_import(module):
    mod = importlib.import_module(module)
    missing = [n for n in NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


def test_reexports_are_the_one_implementation():
    import verl.data
    import verl.reward
    from verl.trainer.config import AlgoConfig, AlgorithmConfig
    from verl.trainer.ppo import reward
    from verl.utils.dataset import rl_dataset
    from verl.workers import reward_manager

    assert rl_dataset.RLHFDataset is verl.data.RLHFDataset and rl_dataset.collate_fn is verl.data.collate_fn
    assert reward_manager.NaiveRewardManager is verl.reward.NaiveRewardManager
    assert reward_manager.get_reward_manager_cls("naive") is verl.reward.NaiveRewardManager
    assert reward.load_reward_manager is verl.reward.load_reward_manager
    assert AlgoConfig is AlgorithmConfig


def test_pad_and_unpad_dataproto():
    from verl.protocol import DataProto, pad_dataproto_to_divisor, unpad_dataproto

    data = DataProto.from_dict({"x": torch.arange(5)}, non_tensors={"uid": np.array(list("abcde"), dtype=object)})
    padded, pad = pad_dataproto_to_divisor(data, 4)
    assert pad == 3 and len(padded) == 8
    assert padded.batch["x"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]  # padding repeats the first rows
    assert list(padded.non_tensor_batch["uid"][5:]) == ["a", "b", "c"]
    assert unpad_dataproto(padded, pad).batch["x"].tolist() == [0, 1, 2, 3, 4]
    same, zero = pad_dataproto_to_divisor(data, 5)
    assert zero == 0 and same is data


def test_metric_helpers_follow_verl():
    from verl.trainer.ppo.metric_utils import bootstrap_metric, calc_maj_val
    from verl.utils.metric import reduce_metrics

    assert reduce_metrics({"loss": [1.0, 3.0], "max_len": [2, 9], "min_len": [2, 9]}) == {
        "loss": 2.0, "max_len": 9, "min_len": 2}  # fmt: skip
    data = [{"pred": "A", "val": 0.9}, {"pred": "B", "val": 0.8}, {"pred": "A", "val": 0.7}]
    assert calc_maj_val(data, "pred", "val") == 0.9
    (mean, std), = bootstrap_metric([1.0, 1.0, 1.0], 2, [np.mean])
    assert (mean, std) == (1.0, 0.0)
    (m1, _), = bootstrap_metric(list(range(10)), 3, [np.max], seed=1)
    (m2, _), = bootstrap_metric(list(range(10)), 3, [np.max], seed=1)
    assert m1 == m2 and 0 < m1 < 9  # seeded, and a max of 3 of 10 draws is rarely the overall max


def test_configs_from_mappings():
    from dataclasses import FrozenInstanceError, dataclass

    from verl.base_config import BaseConfig
    from verl.trainer.config import AlgoConfig
    from verl.utils.config import ConfigError, omega_conf_to_dataclass

    algo = omega_conf_to_dataclass({"_target_": "verl.trainer.config.AlgoConfig", "gamma": 0.5})
    assert isinstance(algo, AlgoConfig) and algo.gamma == 0.5
    with pytest.raises(ConfigError):
        omega_conf_to_dataclass({"gamma": 0.5, "gama": 1}, AlgoConfig)

    @dataclass
    class Cfg(BaseConfig):
        _mutable_fields = {"b"}
        a: int = 1
        b: int = 2

    cfg = Cfg()
    assert cfg.get("a") == 1 and cfg["b"] == 2 and cfg.get("zz", 7) == 7 and "a" in cfg
    cfg.b = 3
    with pytest.raises(FrozenInstanceError):
        cfg.a = 5


def test_copy_to_local_and_torch_functional():
    from verl.utils import torch_functional as verl_F
    from verl.utils.fs import copy_to_local

    assert copy_to_local("/tmp/model") == "/tmp/model"
    with pytest.raises(NotImplementedError, match="local path"):
        copy_to_local("hdfs://cluster/model")
    x, m = torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert verl_F.masked_mean(x, m).item() == 2.0
    assert verl_F.masked_mean(x, m, axis=-1).tolist() == [2.0]  # verl's keyword
    assert verl_F.clip_by_value(torch.tensor([-2.0, 0.5, 2.0]), torch.tensor(-1.0), torch.tensor(1.0)).tolist() == [
        -1.0, 0.5, 1.0]  # fmt: skip
