"""The model merger on a LoRA checkpoint: the merged full model equals peft's ``merge_and_unload`` (sharded output
too), the adapter comes along in peft's format, and ``--lora_adapter_only`` exports the adapter alone."""

import os

import pytest
import torch

from verl.model_merger.__main__ import main as merger

PROMPTS = torch.tensor([[5, 17, 42, 99, 7, 3], [0, 0, 8, 64, 21, 30]])  # (2, 6), the second left-padded
MASK = (PROMPTS != 0).long()


def logits_of(model):
    with torch.no_grad():
        return model(input_ids=PROMPTS, attention_mask=MASK).logits


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory):
    """A base model and a checkpoint of it with trained-looking (random, non-zero) rank-4 adapters on q/v."""
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer
    from verl.workers.config import ModelConfig
    from verl.workers.fsdp import load_hf_model, save_checkpoint
    from verl.workers.lora import LoraSpec, apply_lora
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("lora_merge")
    base_dir = build_tiny_model(root / "base", build_tiny_tokenizer(), num_layers=2, seed=3)
    spec = LoraSpec.from_model_config(ModelConfig(lora_rank=4, lora_alpha=12, target_modules=["q_proj", "v_proj"]), "model")
    model = apply_lora(load_hf_model(base_dir), spec)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    ckpt = str(root / "global_step_1" / "actor")
    save_checkpoint(ckpt, model, None, None, ["model"], 0, 1, hf_save=(model.config, AutoTokenizer.from_pretrained(base_dir)),
                    lora=spec, base_model_path=base_dir)
    return base_dir, ckpt, logits_of(model.eval())


def test_merged_model_equals_peft_merge_and_unload(lora_checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir, ckpt, logits = lora_checkpoint
    target = tmp_path / "merged"
    assert merger(["merge", "--backend", "fsdp", "--local_dir", ckpt, "--target_dir", str(target),
                   "--max_shard_size_mb", "0.05"]) == 0
    assert (target / "model.safetensors.index.json").exists(), "sharded output"
    merged = AutoModelForCausalLM.from_pretrained(target).eval()
    adapter = target / "lora_adapter"
    peft_merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(adapter)).merge_and_unload()
    want = peft_merged.state_dict()
    for name, value in merged.state_dict().items():
        torch.testing.assert_close(value, want[name], atol=1e-6, rtol=0, msg=name)
    torch.testing.assert_close(logits_of(merged), logits, atol=1e-5, rtol=0)
    assert not torch.allclose(logits_of(AutoModelForCausalLM.from_pretrained(base_dir)), logits)
    # the test subcommand reads the LoRA checkpoint as the merged model
    assert merger(["test", "--backend", "fsdp", "--local_dir", ckpt, "--test_hf_dir", str(target)]) == 0


def test_adapter_only_export(lora_checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir, ckpt, logits = lora_checkpoint
    target = tmp_path / "adapter"
    assert merger(["merge", "--backend", "fsdp", "--local_dir", ckpt, "--target_dir", str(target), "--lora_adapter_only"]) == 0
    assert sorted(os.listdir(target)) == ["adapter_config.json", "adapter_model.safetensors"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(target)).eval()
    torch.testing.assert_close(logits_of(model), logits, atol=1e-5, rtol=0)
