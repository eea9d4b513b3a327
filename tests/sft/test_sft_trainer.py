"""The SFT trainer: it learns, its loss is split-invariant (micro-batches, packing, 2 ranks), it resumes exactly."""

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from verl.trainer.fsdp_sft_trainer import main, parse_config
from verl.trainer.sft.loss import sft_loss, target_log_probs
from verl.utils.config import ConfigError
from verl.utils.tracking import read_metrics

GSM8K_KEYS = ["data.prompt_key=extra_info", "data.response_key=extra_info", "data.prompt_dict_keys=[question]",
              "+data.response_dict_keys=[answer]"]


def sft_args(model_dir, files, out_dir, *extra):
    train, val = files
    return [f"model.partial_pretrain={model_dir}", f"data.train_files={train}", f"data.val_files={val}", *GSM8K_KEYS,
            "data.train_batch_size=4", "data.micro_batch_size_per_gpu=2", "optim.lr=1e-2", "optim.warmup_steps_ratio=0",
            f"trainer.default_local_dir={out_dir}", "trainer.logger=file", "model.enable_gradient_checkpointing=false",
            *extra]


def run_in_own_session(cmd, timeout):
    """Run a launcher and, should it hang, stop it together with the ranks it started (its process group)."""
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]


def losses(out_dir):
    return [r["train/loss"] for r in read_metrics(os.path.join(out_dir, "metrics.jsonl"))]


def test_loss_falls_on_a_memorised_dataset(model_dir, sft_files, tmp_path):
    out = tmp_path / "run"
    last = main(sft_args(model_dir, sft_files, out, "data.train_batch_size=8", "data.micro_batch_size_per_gpu=8",
                         "optim.lr=5e-3", "optim.lr_scheduler=constant", "trainer.total_epochs=24",
                         "trainer.test_freq=8", "trainer.save_freq=12", "model.enable_gradient_checkpointing=true",
                         "trainer.max_ckpt_to_keep=1"))
    records = read_metrics(str(out / "metrics.jsonl"))
    train = [r["train/loss"] for r in records]
    val = [r["val/loss"] for r in records if "val/loss" in r]
    assert [r["step"] for r in records] == list(range(1, 25))
    assert train[-1] < 0.3 * train[0], train
    assert len(val) == 3 and val[0] > val[1] > val[2] and val[2] < 0.3 * train[0], val  # val rows are memorised too
    assert last["train/loss"] == pytest.approx(train[-1])
    # checkpoints every 12 steps, only the newest kept, and the latest-step file points at it
    assert sorted(os.listdir(out)) == ["global_step_24", "latest_checkpointed_iteration.txt", "metrics.jsonl"]
    assert (out / "latest_checkpointed_iteration.txt").read_text() == "24"
    assert {"model", "optim", "huggingface", "extra_state_world_size_1_rank_0.pt"} <= set(os.listdir(out / "global_step_24"))


def test_resumed_run_continues_exactly(model_dir, sft_files, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    main(sft_args(model_dir, sft_files, full, "trainer.total_training_steps=4", "trainer.save_freq=2"))
    # an interrupted run: it had saved step 2 when it died
    shutil.copytree(full / "global_step_2", cut / "global_step_2")
    (cut / "latest_checkpointed_iteration.txt").write_text("2")
    main(sft_args(model_dir, sft_files, cut, "trainer.total_training_steps=4", "trainer.save_freq=2"))
    assert losses(cut) == pytest.approx(losses(full)[2:], rel=1e-6)
    from verl.model_merger import load_checkpoint_state_dict

    a = load_checkpoint_state_dict(str(full / "global_step_4"))
    b = load_checkpoint_state_dict(str(cut / "global_step_4"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_two_ranks_equal_one_rank(model_dir, sft_files, tmp_path):
    """torchrun with 2 gloo ranks (FSDP2-sharded, padded micro-batches of 1) == 1 process (packed, micro 4)."""
    one, two = tmp_path / "one", tmp_path / "two"
    steps = ["trainer.total_training_steps=3", "trainer.test_freq=3"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "verl.trainer.fsdp_sft_trainer",
           *sft_args(model_dir, sft_files, two, *steps, "data.micro_batch_size_per_gpu=1", "use_remove_padding=false")]
    run_in_own_session(cmd, timeout=240)
    main(sft_args(model_dir, sft_files, one, *steps, "data.micro_batch_size_per_gpu=4"))
    r1, r2 = read_metrics(str(one / "metrics.jsonl")), read_metrics(str(two / "metrics.jsonl"))
    for key in ("train/loss", "train/grad_norm", "train/target_tokens"):
        assert [r[key] for r in r2] == pytest.approx([r[key] for r in r1], rel=1e-5), key
    assert r2[-1]["val/loss"] == pytest.approx(r1[-1]["val/loss"], rel=1e-5)
    # the 2-rank checkpoint holds one shard per rank and merges to the same weights as the 1-rank one
    assert sorted(f for f in os.listdir(two / "global_step_3") if f.startswith("extra")) == [
        "extra_state_world_size_2_rank_0.pt", "extra_state_world_size_2_rank_1.pt"]
    assert sorted(os.listdir(two / "global_step_3" / "model")) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    from verl.model_merger import load_checkpoint_state_dict

    w1 = load_checkpoint_state_dict(str(one / "global_step_3"))
    w2 = load_checkpoint_state_dict(str(two / "global_step_3"))
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=0, atol=2e-5, msg=name)


def test_dynamic_micro_batches_give_the_same_steps(model_dir, sft_files, tmp_path):
    fixed, dynamic = tmp_path / "fixed", tmp_path / "dynamic"
    main(sft_args(model_dir, sft_files, fixed, "trainer.total_training_steps=2", "data.micro_batch_size_per_gpu=4"))
    # a 40-token budget forces several unevenly sized micro-batches per step
    main(sft_args(model_dir, sft_files, dynamic, "trainer.total_training_steps=2", "data.use_dynamic_bsz=true",
                  "data.max_length=40", "data.max_token_len_per_gpu=40"))
    assert losses(dynamic) == pytest.approx(losses(fixed), rel=1e-5)


def test_packed_and_padded_forwards_agree_and_loss_is_split_invariant(model_dir, tokenizer):
    from verl.data.sft_dataset import sft_collate_fn, tokenize_conversation
    from verl.workers.fsdp import load_hf_model

    model = load_hf_model(model_dir)
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in [("Hi", "Hello there."), ("What is 7 * 8?", "56"), ("Name a colour.", "Blue, like the sky.")]]
    items = []
    for conv in convs:
        ids, mask = tokenize_conversation(tokenizer, conv)
        n = len(ids)
        items.append({"input_ids": torch.tensor(ids), "loss_mask": torch.tensor(mask),
                      "attention_mask": torch.ones(n, dtype=torch.long), "position_ids": torch.arange(n)})
    batch = sft_collate_fn(items, tokenizer.pad_token_id)
    padded = target_log_probs(model, batch, packed=False)
    packed = target_log_probs(model, batch, packed=True)
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)
    from verl.workers.attention import use_packed_attention

    switched = load_hf_model(model_dir)
    use_packed_attention(switched)  # what the trainer does: attention within each sequence, no dense mask
    torch.testing.assert_close(target_log_probs(switched, batch, packed=True), padded, rtol=0, atol=1e-5)
    torch.testing.assert_close(target_log_probs(switched, batch, packed=False), padded, rtol=0, atol=1e-5)
    # hand check of one row: log softmax of the logits one position before each assistant token
    ids = batch["input_ids"][0, : len(items[0]["input_ids"])]
    logits = model(input_ids=ids[None]).logits[0]
    want = torch.log_softmax(logits[:-1], -1).gather(-1, ids[1:, None]).squeeze(-1)[items[0]["loss_mask"][1:].bool()]
    torch.testing.assert_close(padded[: len(want)], want, rtol=0, atol=1e-5)

    # the gradient of micro-batches normalised by the global count == the whole batch's token-mean
    def grads(micro_rows):
        model.zero_grad()
        total = int(sum(items[i]["loss_mask"][1:].sum() for i in range(3)))
        for rows in micro_rows:
            mb = sft_collate_fn([items[i] for i in rows], tokenizer.pad_token_id)
            sft_loss(target_log_probs(model, mb, packed=True), total, dp_size=1).backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads([[0, 1, 2]]), grads([[0], [1, 2]])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_config_errors_name_the_key(model_dir, sft_files, tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown config key optim.warmup_step_ratio; did you mean optim.warmup_steps"):
        parse_config(["optim.warmup_step_ratio=0.1"])
    with pytest.raises(ConfigError, match="data.train_batch_size=5 cannot be split over 2 ranks"):
        parse_config(sft_args(model_dir, sft_files, tmp_path, "data.train_batch_size=5")).validate(world_size=2)
    with pytest.raises(ConfigError, match=r"model.lora_alpha=0(\.0)? must be > 0"):
        parse_config(sft_args(model_dir, sft_files, tmp_path, "model.lora_rank=8", "model.lora_alpha=0")).validate()
    with pytest.raises(ConfigError, match="trainer.total_epochs must be an integer"):
        parse_config(["trainer.total_epochs=two"])
    with pytest.raises(SystemExit) as exit_info:
        main([f"data.train_files={sft_files[0]}"])
    assert exit_info.value.code == 2 and "model.partial_pretrain is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    assert "data.multiturn.messages_key = 'messages'" in capsys.readouterr().out
    cfg = parse_config(["trainer.project_name=p", "trainer.experiment_name=e", "optim.lr=3e-5"])
    assert cfg.trainer.default_local_dir == "checkpoints/p/e" and cfg.optim.lr == 3e-5
