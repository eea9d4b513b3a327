"""SFT with LoRA (``model.lora_rank > 0``): the loss falls while only the adapters train, the checkpoint carries the
adapter in peft's format (same logits through ``PeftModel``), and a resumed run continues exactly."""

import os
import shutil

import pytest
import torch

from verl.trainer.fsdp_sft_trainer import main
from verl.utils.tracking import read_metrics

LORA = ["model.lora_rank=8", "model.lora_alpha=16", "optim.lr=5e-3", "optim.lr_scheduler=constant",
        "trainer.total_training_steps=4", "trainer.save_freq=2", "model.enable_gradient_checkpointing=true",
        "trainer.save_hf_model=true"]


def sft_args(model_dir, files, out_dir, *extra):
    train, val = files
    return [f"model.partial_pretrain={model_dir}", f"data.train_files={train}", f"data.val_files={val}",
            "data.prompt_key=extra_info", "data.response_key=extra_info", "data.prompt_dict_keys=[question]",
            "+data.response_dict_keys=[answer]", "data.train_batch_size=8", "data.micro_batch_size_per_gpu=4",
            "optim.warmup_steps_ratio=0", f"trainer.default_local_dir={out_dir}", "trainer.logger=file", *extra]


def losses(out_dir):
    return [r["train/loss"] for r in read_metrics(os.path.join(out_dir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def lora_run(model_dir, sft_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft_lora") / "run"
    main(sft_args(model_dir, sft_files, out, *LORA))
    return out


def test_sft_lora_learns_and_trains_only_the_adapters(lora_run, model_dir):
    from verl.model_merger import checkpoint_tensor_specs
    from verl.model_merger.fsdp import _load_tensors
    from verl.workers.fsdp import load_hf_model

    train = losses(lora_run)
    # a random tiny model with frozen embeddings learns slowly, but every step lowers the loss
    assert len(train) == 4 and all(b < a for a, b in zip(train, train[1:])) and train[-1] < train[0] - 0.2, train
    ckpt = str(lora_run / "global_step_4")
    specs = checkpoint_tensor_specs(ckpt)
    stored = _load_tensors(ckpt, specs)
    base = load_hf_model(model_dir).state_dict()
    adapters = [n for n in stored if ".lora_" in n]
    assert len(adapters) == 2 * 7 * 2
    for name, value in stored.items():
        if ".lora_B." in name:
            assert value.abs().sum() > 0, f"{name} never trained (B starts at zero)"
        elif ".lora_" not in name:
            assert torch.equal(value, base[name.replace(".base_layer.", ".")]), f"frozen {name} changed"


def test_sft_lora_adapter_loads_with_peft(lora_run, model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from verl.model_merger import load_checkpoint_state_dict

    ckpt = lora_run / "global_step_4"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(ckpt / "lora_adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    merged.load_state_dict(load_checkpoint_state_dict(str(ckpt), tied=True), strict=False)
    exported = AutoModelForCausalLM.from_pretrained(ckpt / "huggingface").eval()  # save_hf_model: merged weights
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, merged.eval()(input_ids=ids).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(input_ids=ids).logits, exported(input_ids=ids).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(model(input_ids=ids).logits, AutoModelForCausalLM.from_pretrained(model_dir)(input_ids=ids).logits)


def test_sft_lora_resume_continues_exactly(lora_run, model_dir, sft_files, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(lora_run / "global_step_2", cut / "global_step_2")
    (cut / "latest_checkpointed_iteration.txt").write_text("2")
    main(sft_args(model_dir, sft_files, cut, *LORA))
    assert losses(cut) == pytest.approx(losses(lora_run)[2:], rel=1e-6)
