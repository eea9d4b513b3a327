"""The model merger: SFT, PPO-actor and critic checkpoints become transformers directories with the same outputs
as the models that were trained; tied and untied embeddings; sharded output; the ``test`` subcommand."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from verl.model_merger.__main__ import main as merger

PROMPTS = torch.tensor([[5, 17, 42, 99, 7, 3], [0, 0, 8, 64, 21, 30]])  # (2, 6), the second left-padded
MASK = (PROMPTS != 0).long()


@pytest.fixture(scope="module")
def tokenizer():
    from verl.utils.tiny_model import build_tiny_tokenizer

    return build_tiny_tokenizer()


def tiny_model(path, tokenizer, tied=True):
    from verl.utils.tiny_model import build_tiny_model

    return build_tiny_model(path, tokenizer, num_layers=2, tie_word_embeddings=tied, seed=3)


def logits_of(model):
    with torch.no_grad():
        return model(input_ids=PROMPTS, attention_mask=MASK).logits


def test_sft_checkpoint_merges_to_the_trained_model(tokenizer, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from verl.trainer.fsdp_sft_trainer import parse_config
    from verl.trainer.sft.trainer import FSDPSFTTrainer

    model_dir = tiny_model(tmp_path / "base", tokenizer)
    rows = [{"q": f"What is {a} * 3?", "a": f"{a * 3}"} for a in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    cfg = parse_config([f"model.partial_pretrain={model_dir}", f"data.train_files={tmp_path / 'train.parquet'}",
                        "data.prompt_key=q", "data.response_key=a", "data.train_batch_size=4", "optim.lr=1e-2",
                        "trainer.total_training_steps=2", f"trainer.default_local_dir={tmp_path / 'ckpt'}",
                        "trainer.logger=[]", "trainer.save_hf_model=true"])
    trainer = FSDPSFTTrainer(cfg)
    trainer.fit()
    trainer.model.eval()
    trained = logits_of(trainer.model)
    assert not torch.allclose(trained, logits_of(AutoModelForCausalLM.from_pretrained(model_dir)), atol=1e-3)

    ckpt = tmp_path / "ckpt" / "global_step_2"
    assert merger(["merge", "--backend", "fsdp", "--local_dir", str(ckpt), "--target_dir", str(tmp_path / "hf")]) == 0
    files = sorted(os.listdir(tmp_path / "hf"))
    assert "model.safetensors" in files and "tokenizer.json" in files and "config.json" in files
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert merged.config.tie_word_embeddings and merged.config.use_cache
    torch.testing.assert_close(logits_of(merged), trained, rtol=0, atol=1e-5)
    # trainer.save_hf_model wrote the same model into the checkpoint's huggingface/ directory
    torch.testing.assert_close(logits_of(AutoModelForCausalLM.from_pretrained(ckpt / "huggingface")), trained,
                               rtol=0, atol=1e-5)
    # `test`: the checkpoint matches its merge and the export, not the untrained model
    capsys.readouterr()
    assert merger(["test", "--backend", "fsdp", "--local_dir", str(ckpt), "--test_hf_dir", str(tmp_path / "hf")]) == 0
    assert merger(["test", "--backend", "fsdp", "--local_dir", str(tmp_path / "hf"),
                   "--test_hf_dir", str(ckpt / "huggingface")]) == 0
    assert "OK: 26 tensors" in capsys.readouterr().out
    assert merger(["test", "--backend", "fsdp", "--local_dir", str(ckpt), "--test_hf_dir", model_dir]) == 1
    assert "FAILED: 26 difference(s)" in capsys.readouterr().out


def ppo_batch(worker):
    """A generated batch with old log-probs and advantages, as the PPO trainer hands to update_actor."""
    from verl import DataProto

    prompts = DataProto.from_dict({"input_ids": PROMPTS, "attention_mask": MASK,
                                   "position_ids": (MASK.cumsum(-1) - 1).clamp(min=0)})
    batch = worker.generate_sequences(prompts.repeat(2, interleave=True))
    batch = batch.union(worker.compute_log_prob(batch))
    batch.batch["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5])[:, None] * batch.batch["response_mask"]
    return batch


def test_ppo_actor_checkpoint_untied_and_sharded(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from verl.workers.fsdp_workers import ActorRolloutRefWorker

    model_dir = tiny_model(tmp_path / "base", tokenizer, tied=False)
    worker = ActorRolloutRefWorker({
        "model": {"path": model_dir, "enable_gradient_checkpointing": False},
        "actor": {"ppo_mini_batch_size": 2, "ppo_micro_batch_size_per_gpu": 2, "optim": {"lr": 1e-2}},
        "rollout": {"name": "native", "n": 2, "prompt_length": 6, "response_length": 5, "dtype": "float32",
                    "log_prob_micro_batch_size_per_gpu": 4},
    }, role="actor_rollout", total_training_steps=2)
    worker.init_model()
    worker.update_actor(ppo_batch(worker))
    actor = worker.actor_module.eval()
    ckpt = tmp_path / "global_step_1" / "actor"
    worker.save_checkpoint(str(ckpt), global_step=1)

    target = tmp_path / "hf_actor"
    assert merger(["merge", "--backend", "fsdp", "--local_dir", str(ckpt), "--target_dir", str(target),
                   "--max_shard_size_mb", "0.1"]) == 0
    index = json.loads((target / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((target / s).is_file() for s in shards)
    assert "lm_head.weight" in index["weight_map"]  # untied: the output head is its own tensor
    merged = AutoModelForCausalLM.from_pretrained(target)
    assert not merged.config.tie_word_embeddings
    torch.testing.assert_close(logits_of(merged), logits_of(actor), rtol=0, atol=1e-5)
    # a bf16 export: same model within bf16 rounding, half the bytes
    assert merger(["merge", "--backend", "fsdp", "--local_dir", str(ckpt), "--target_dir", str(tmp_path / "bf16"),
                   "--dtype", "bfloat16"]) == 0
    bf16 = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.float32)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    torch.testing.assert_close(logits_of(bf16), logits_of(actor), rtol=0, atol=0.05)


def test_critic_checkpoint_merges_to_a_value_model(tokenizer, tmp_path):
    from transformers import AutoModelForTokenClassification

    from verl.workers.critic import CriticWorker

    model_dir = tiny_model(tmp_path / "base", tokenizer)
    worker = CriticWorker({"model": {"path": model_dir, "enable_gradient_checkpointing": False},
                           "ppo_mini_batch_size": 2, "ppo_micro_batch_size_per_gpu": 2})
    worker.init_model()
    ckpt = tmp_path / "global_step_1" / "critic"
    worker.save_checkpoint(str(ckpt))
    # the critic's checkpoint may lack huggingface/: the base model's config is turned into a value model's
    assert merger(["merge", "--backend", "fsdp", "--local_dir", str(ckpt), "--target_dir", str(tmp_path / "hf"),
                   "--is-value-model", "--hf_model_path", model_dir]) == 0
    merged = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf")
    assert merged.config.num_labels == 1 and merged.config.architectures == ["Qwen2ForTokenClassification"]
    with torch.no_grad():
        want = worker.module.eval()(input_ids=PROMPTS, attention_mask=MASK).logits
    torch.testing.assert_close(logits_of(merged), want, rtol=0, atol=1e-5)


def test_bad_input_is_named(tmp_path, capsys):
    from verl.model_merger import MergeConfig, merge_fsdp_checkpoint

    with pytest.raises(FileNotFoundError, match="has no model/.metadata: not an FSDP checkpoint"):
        merge_fsdp_checkpoint(MergeConfig(local_dir=str(tmp_path), target_dir=str(tmp_path / "out"),
                                          hf_model_config_path=None))
    assert merger(["merge", "--backend", "megatron", "--local_dir", str(tmp_path)]) == 2
    assert "only --backend fsdp is supported" in capsys.readouterr().err
