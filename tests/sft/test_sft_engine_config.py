"""verl's newer SFT config (``sft_trainer_engine``): every key known, a short run with its keys through
``python -m verl.trainer.sft_trainer``, what cannot run refused naming the key, and ``data.enable_thinking_key``."""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from verl.trainer.fsdp_sft_trainer import parse_config
from verl.trainer.sft.engine_config import SFTEngineConfig
from verl.trainer.sft_trainer import main
from verl.utils.config import ConfigError, iter_fields
from verl.utils.tracking import read_metrics

KEYS = Path(__file__).parents[1] / "trainer" / "verl_examples" / "verl_sft_engine_keys.txt"


def test_every_key_of_verls_engine_sft_config_is_known():
    ours = {key for key, _, _ in iter_fields(SFTEngineConfig)}
    free_form = {key for key, value, _ in iter_fields(SFTEngineConfig) if isinstance(value, dict)}
    verl = [k for k in KEYS.read_text().splitlines() if k and not k.startswith("#")]
    # profiler.tool_config.<tool>.name are type tags in verl's profiler group file (npu, nsight, torch,
    # torch_memory), not settings; verl's composed PPO config does not have them either
    tags = {f"profiler.tool_config.{tool}.name" for tool in ("npu", "nsys", "torch", "torch_memory")}
    missing = [k for k in verl if k not in ours and k not in tags and not any(k.startswith(f + ".") for f in free_form)]
    assert not missing, missing


def test_engine_keys_train_through_verls_entry_point(model_dir, chats, tmp_path, capsys):
    args = [f"model.path={model_dir}", f"data.train_files={chats}", "data.train_batch_size=4",
            "data.micro_batch_size_per_gpu=2", "data.use_dynamic_bsz=false", "optim.lr=1e-2",
            "engine.strategy=fsdp2", "model.enable_gradient_checkpointing=false", "trainer.total_training_steps=2",
            "trainer.logger=[file]", f"trainer.default_local_dir={tmp_path}", "trainer.n_gpus_per_node=1"]
    with pytest.raises(SystemExit) as stop:  # --cfg job prints verl's engine-style config
        main(["--cfg", "job", *args])
    assert stop.value.code == 0 and yaml.safe_load(capsys.readouterr().out)["engine"]["strategy"] == "fsdp2"
    cfg = parse_config(["--config-name", "sft_trainer_engine", *args])
    assert cfg.model.partial_pretrain == model_dir and cfg.data.multiturn.enable and cfg.optim.lr == 1e-2
    assert cfg.use_remove_padding and cfg.optim.lr_scheduler == "constant", "verl's defaults: no_padding, constant"
    main(args)
    losses = [r["train/loss"] for r in read_metrics(os.path.join(tmp_path, "metrics.jsonl")) if "train/loss" in r]
    assert len(losses) == 2 and losses[-1] < losses[0]


@pytest.mark.parametrize("override,message", [
    ("engine.param_offload=true", "engine.param_offload"),
    ("model.enable_activation_offload=true", "model.enable_activation_offload=True is not supported"),
    ("engine.wrap_policy.min_num_params=100", "engine.wrap_policy.min_num_params=100 is not supported"),
    ("optim.optimizer=SGD", "optim.optimizer='SGD' is not supported"),
    ("optim.lr_warmup_steps=10", "optim.lr_warmup_steps=10"),
    ("profiler.enable=true", "profiler.enable=true"),
    ("data.pad_mode=packed", "data.pad_mode='packed'"),
    ("model.mtp.enable=true", "model.mtp.enable=True is not supported"),
])
def test_what_cannot_run_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_config(["--config-name", "sft_trainer_engine", "model.path=/m", "data.train_files=/d", override])


def test_a_rows_enable_thinking_reaches_the_chat_template(tmp_path):
    from verl.data.sft_dataset import SFTDataset
    from verl.utils.tiny_model import CHAT_TEMPLATE, build_tiny_tokenizer

    template = "{% if enable_thinking is defined and not enable_thinking %}NOTHINK{% endif %}" + CHAT_TEMPLATE
    tok = build_tiny_tokenizer(chat_template=template)
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    pq.write_table(pa.Table.from_pylist([{"messages": chat, "think": False}, {"messages": chat, "think": True},
                                         {"messages": chat, "think": None}]), tmp_path / "d.parquet")
    ds = SFTDataset(str(tmp_path / "d.parquet"), tok, {"multiturn": {"enable": True, "enable_thinking_key": "think"}})
    off, on, unset = (tok.decode(ds[i]["input_ids"]) for i in range(3))
    assert off.startswith("NOTHINK") and not on.startswith("NOTHINK") and on == unset
