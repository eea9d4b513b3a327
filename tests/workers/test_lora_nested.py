"""verl's nested LoRA spelling (``model.lora.rank`` / ``alpha`` / ``target_modules`` with Megatron layer names)
gives the same adapters as the flat keys; what cannot run is refused naming the key."""

import pytest

from verl.trainer.config import load_config, validate_config
from verl.utils.config import ConfigError
from verl.workers.config import ModelConfig
from verl.workers.lora import LoraSpec, apply_lora, lora_enabled, lora_summary
from verl.workers.lora_nested import flat_lora_keys

BASE = ["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", "critic.ppo_micro_batch_size_per_gpu=4"]


def test_megatron_layer_names_map_to_the_same_hugging_face_layers():
    assert flat_lora_keys({"rank": 8, "target_modules": ["linear_qkv", "linear_proj"]}, "m") == {
        "lora_rank": 8, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    assert flat_lora_keys({"rank": 8, "alpha": 4, "target_modules": ["linear_qkv", "linear_proj", "linear_fc1",
                                                                    "linear_fc2"]}, "m")["target_modules"] == "all-linear"
    assert flat_lora_keys({"target_modules": ["linear_fc1_up", "q_proj"], "merge": True}, "m") == {
        "target_modules": ["up_proj", "q_proj"]}


@pytest.mark.parametrize("entry,message", [
    ({"dropout": 0.1}, "m.lora.dropout=0.1 is not supported"),
    ({"type": "dora"}, "m.lora.type='dora' is not supported"),
    ({"lora_A_init_method": "xavier"}, "m.lora.lora_A_init_method='xavier' is not supported"),
    ({"rnak": 4}, "unknown key m.lora.rnak"),
])
def test_what_cannot_run_is_refused_naming_the_key(entry, message):
    with pytest.raises(ValueError, match=message):
        flat_lora_keys(entry, "m")


def test_nested_keys_give_the_adapters_of_the_flat_keys(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    nested = ModelConfig(lora={"rank": 4, "alpha": 8, "target_modules": ["linear_qkv"],
                               "lora_A_init_method": "kaiming"})
    flat = ModelConfig(lora_rank=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"])
    spec = LoraSpec.from_model_config(nested, "actor_rollout_ref.model")
    assert spec == LoraSpec.from_model_config(flat, "actor_rollout_ref.model") and lora_enabled(nested)
    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), spec)
    assert lora_summary(model).module_kinds == ("k_proj", "q_proj", "v_proj")
    with pytest.raises(ValueError, match="lora_rank=2 and actor_rollout_ref.model.lora.rank=4 disagree"):
        LoraSpec.from_model_config(ModelConfig(lora_rank=2, lora={"rank": 4}), "actor_rollout_ref.model")


def test_the_command_line_spelling_is_checked_before_anything_starts():
    cfg = load_config([*BASE, "actor_rollout_ref.model.lora.rank=4", "actor_rollout_ref.model.lora.alpha=8"])
    validate_config(cfg, check_environment=False)
    with pytest.raises(ConfigError, match="actor_rollout_ref.model.lora.dropout=0.1"):
        validate_config(load_config([*BASE, "actor_rollout_ref.model.lora.rank=4",
                                     "actor_rollout_ref.model.lora.dropout=0.1"]), check_environment=False)
