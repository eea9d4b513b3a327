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
    "verl.protocol": ["DataProto", "DataProtoItem", "DataProtoConfig", "pad_dataproto_to_divisor", "unpad_dataproto",
                      "union_tensor_dict", "union_numpy_dict", "collate_fn", "fold_batch_dim", "unfold_batch_dim",
                      "serialize_single_tensor", "deserialize_single_tensor", "serialize_tensordict",
                      "deserialize_tensordict", "list_of_dict_to_dict_of_list"],
    "verl.utils.seqlen_balancing": ["get_seqlen_balanced_partitions", "greedy_partition", "rearrange_micro_batches",
                                    "prepare_dynamic_batch", "restore_dynamic_batch", "get_reverse_idx", "ceildiv",
                                    "roundup_divisible", "calculate_workload", "log_seqlen_unbalance",
                                    "get_group_balanced_partitions"],
    "verl.utils.flops_counter": ["FlopsCounter", "get_device_flops"],
    "verl.utils.device": ["get_device_name", "get_torch_device", "get_nccl_backend"],
    "verl.utils.checkpoint.fsdp_checkpoint_manager": ["FSDPCheckpointManager"],
    "verl.workers.config": ["ActorConfig", "FSDPActorConfig", "CriticConfig", "FSDPCriticConfig", "FSDPCriticModelCfg",
                            "HFModelConfig", "OptimizerConfig", "FSDPOptimizerConfig", "FSDPEngineConfig",
                            "PolicyLossConfig", "RouterReplayConfig", "RolloutConfig", "RewardModelConfig",
                            "SandboxFusionConfig", "AgentLoopConfig", "MtpConfig", "CheckpointConfig"],
    "verl.single_controller.ray": ["RayWorkerGroup", "RayResourcePool", "RayClassWithInitArgs"],
    "verl.single_controller.base": ["Worker", "WorkerGroup"],
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


def test_seqlen_balancing_is_the_one_balancer():
    from verl.trainer.ppo import batch_ops
    from verl.utils import seqlen_balancing as sb
    from verl.workers import batching

    lengths = [90, 10, 50, 50, 30, 70, 20, 80]
    parts = sb.get_seqlen_balanced_partitions(lengths, 4, equal_size=True)
    assert sorted(i for p in parts for i in p) == list(range(8)) and all(len(p) == 2 and p == sorted(p) for p in parts)
    assert sorted(sum(lengths[i] for i in p) for p in parts) == [100, 100, 100, 100]
    assert batch_ops.balanced_order(lengths, 4) == [i for p in parts for i in p], "the trainer's balancing is the same"
    assert batching.greedy_partition is sb.greedy_partition
    with pytest.raises(ValueError, match="3 < k_partitions: 4"):
        sb.get_seqlen_balanced_partitions([1, 2, 3], 4, equal_size=False)
    assert sb.log_seqlen_unbalance([1, 9, 5, 5], [[0, 1], [2, 3]], "s") == {
        "s/min": 10, "s/max": 10, "s/minmax_diff": 0, "s/balanced_min": 10, "s/balanced_max": 10, "s/mean": 10.0}

    from verl.protocol import DataProto

    mask = torch.zeros(6, 8, dtype=torch.long)
    for row, n in enumerate([8, 2, 6, 3, 7, 1]):
        mask[row, :n] = 1
    data = DataProto.from_dict({"attention_mask": mask, "row": torch.arange(6)}, {"uid": list("abcdef")})
    micro, idx = sb.prepare_dynamic_batch(data, max_token_len=10)
    assert len(micro) == 3 and sorted(i for p in idx for i in p) == list(range(6))  # ceil(27 / 10) micro-batches
    assert all(list(m.non_tensor_batch["uid"]) == [list("abcdef")[i] for i in p] for m, p in zip(micro, idx))
    merged = torch.cat([m.batch["row"] for m in micro])
    assert sb.restore_dynamic_batch(merged, idx).tolist() == list(range(6))
    assert len(sb.prepare_dynamic_batch(data, max_token_len=10, min_num_micro_batch=5)[0]) == 5
    groups = sb.get_group_balanced_partitions([9, 9, 1, 1, 5, 5, 5, 5], ["a", "a", "b", "b", "c", "c", "d", "d"], 2)
    assert groups == [[0, 1, 2, 3], [4, 5, 6, 7]], "runs of one uid stay together, two runs per partition"


def test_flops_counter_counts_a_dense_decoder():
    from types import SimpleNamespace

    from verl.utils.flops_counter import FlopsCounter, get_device_flops

    cfg = SimpleNamespace(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, vocab_size=100)
    # per layer: q,o 64x64 each, k,v 64x32 each, MLP 3 x 64x128; plus embedding and LM head 2 x 100x64
    params = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) + 2 * 100 * 64
    attention = (3 * 3 + 5 * 5) * 64 * 2
    achieved, peak = FlopsCounter(cfg).estimate_flops([3, 5], delta_time=2.0)
    assert achieved == pytest.approx(6 * (params * 8 + attention) / 2.0 / 1e12)
    assert peak == get_device_flops()
    assert get_device_flops("T", device_name="NVIDIA H100 80GB HBM3") == pytest.approx(989.0)
    assert get_device_flops("T", device_name="a CPU") == float("inf")
    moe = SimpleNamespace(**{**vars(cfg), "model_type": "qwen3_moe", "moe_intermediate_size": 32,
                             "num_experts": 8, "num_experts_per_tok": 2})
    moe_params = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 32 * 2 + 64 * 8) + 2 * 100 * 64  # 2 active experts + router
    assert FlopsCounter(moe).estimate_flops([3, 5], 2.0)[0] == pytest.approx(6 * (moe_params * 8 + attention) / 2e12)
    assert FlopsCounter(SimpleNamespace(model_type="deepseek_v3")).estimate_flops([3], 1.0)[0] == 0.0


def test_fsdp_checkpoint_manager_round_trip(tmp_path):
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 4)).sum().backward()
    optim.step()
    manager = FSDPCheckpointManager(model, optim, checkpoint_config={"save_contents": ["model", "optimizer", "extra"]})
    for step in (1, 2):
        manager.save_checkpoint(str(tmp_path / f"global_step_{step}"), global_step=step, max_ckpt_to_keep=1)
    assert not (tmp_path / "global_step_1").exists() and (tmp_path / "global_step_2" / "model").is_dir()
    saved = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    manager.load_checkpoint(str(tmp_path / "global_step_2"))
    assert all(torch.equal(a, b) for a, b in zip(saved, model.parameters()))
    with pytest.raises(ValueError, match="unknown part"):
        FSDPCheckpointManager(model, checkpoint_config={"save_contents": ["weights"]})
    with pytest.raises(ValueError, match="hdfs_path"):
        manager.save_checkpoint(str(tmp_path / "x"), hdfs_path="hdfs://a/b")


def test_verl_worker_config_names_are_ours():
    from verl.workers import config

    assert config.FSDPActorConfig is config.ActorConfig and config.FSDPCriticConfig is config.CriticConfig
    assert config.OptimizerConfig is config.FSDPOptimizerConfig is config.OptimConfig
    assert config.FSDPEngineConfig is config.FSDPConfig
