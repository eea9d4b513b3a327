"""verl's reward loop: rule rewards scored in worker processes (``reward_model.num_workers``) with the same results,
and a generative reward model served by a rollout engine to a verl-style reward function."""

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request

import pytest
import torch

from verl.reward import NaiveRewardManager
from verl.reward.loader import CustomRewardFunction
from verl.reward.loop import ParallelRewardManager, check_reward_loop
from verl.reward.loop.setup import start_genrm_server
from verl.trainer.config import load_config
from verl.utils.config import ConfigError

HERE = os.path.dirname(__file__)
FN_FILE = os.path.join(HERE, "genrm_reward_fn.py")
sys.path.insert(0, HERE)


def test_reward_workers_score_in_their_own_processes_with_the_same_rewards(tokenizer, rollout_batch):
    truths = ["4", "7", "boom", "3", "9", "1"]
    responses = ["4", "8", "x", "3", "9", "2"]
    batch = rollout_batch(tokenizer, ["q"] * 6, responses, ["s"] * 6, truths)
    manager = NaiveRewardManager(tokenizer, compute_score=CustomRewardFunction(FN_FILE, "score_by_pid"))
    serial = manager(batch, return_dict=True)
    parallel = ParallelRewardManager(manager, num_workers=3)(batch, return_dict=True)
    assert torch.equal(serial["reward_tensor"], parallel["reward_tensor"])
    assert serial["reward_tensor"].sum().item() == 3  # "4", "3", "9" match
    assert set(serial["reward_extra_info"]["pid"]) - {None} == {os.getpid()}
    pids = [p for p in parallel["reward_extra_info"]["pid"] if p is not None]
    assert len(set(pids)) == 3 and os.getpid() not in pids, "each part scored in its own worker process"
    assert parallel["reward_metrics"] == serial["reward_metrics"] and serial["reward_metrics"]["reward/num_errors"] == 1
    assert parallel["reward_failure"].index == serial["reward_failure"].index == 2, "the index in the whole batch"


def genrm_config(model, *extra):
    return load_config([f"reward_model.model.path={model}", "reward_model.enable=true",
                        "reward_model.rollout.name=native", "reward_model.rollout.dtype=float32",
                        "reward_model.rollout.prompt_length=256", "reward_model.rollout.response_length=16",
                        f"custom_reward_function.path={FN_FILE}", "trainer.device=cpu", *extra])


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    return build_tiny_model(tmp_path_factory.mktemp("judge") / "m", build_tiny_tokenizer(), num_layers=1, seed=3)


def test_generative_reward_model_answers_as_its_model_does(judge):
    from transformers import AutoModelForCausalLM

    from genrm_reward_fn import compute_score, judge_messages

    server, rm_tok = start_genrm_server(genrm_config(judge))
    try:
        infos = [{"question": f"What is {i} + 1?"} for i in range(4)]

        async def score_all():
            return await asyncio.gather(*(compute_score("s", f"{i + 1}", "", info, server.address, rm_tok)
                                          for i, info in enumerate(infos)))

        results = asyncio.run(score_all())  # four concurrent requests
        model = AutoModelForCausalLM.from_pretrained(judge, dtype=torch.float32).eval()
        for i, (info, result) in enumerate(zip(infos, results)):
            ids = rm_tok.apply_chat_template(judge_messages(info, f"{i + 1}"), add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"]
            out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                 pad_token_id=rm_tok.pad_token_id)[0, len(ids):]
            answer = rm_tok.decode(out, skip_special_tokens=True)
            assert answer and result == {"score": float(len(answer) % 7), "judge_chars": len(answer)}, (i, answer)
        assert server.num_requests == 4
        server.end_round()  # free_cache_engine: the engine sleeps; the next request wakes it
        assert server._asleep
        assert asyncio.run(compute_score("s", "1", "", infos[0], server.address, rm_tok)) == results[0]
        url = f"http://{server.address}/v1/completions"
        body = json.dumps({"prompt": "x " * 400, "max_tokens": 2}).encode()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"}))
        assert err.value.code == 400 and b"prompt_length=256" in err.value.read()
        models = json.load(urllib.request.urlopen(f"http://{server.address}/v1/models"))
        assert models["data"][0]["id"] == judge
    finally:
        server.close()


@pytest.mark.parametrize("override,message", [
    ("reward_model.rollout.tensor_model_parallel_size=2", "reward_model.rollout.tensor_model_parallel_size=2"),
    ("reward_model.rollout.load_format=dummy", "reward_model.rollout.load_format=dummy"),
    ("reward_model.rollout.name=sglang", "reward_model.rollout.name='sglang'"),
    ("reward_model.num_workers=0", "reward_model.num_workers=0"),
])
def test_reward_loop_settings_that_cannot_run_are_refused(judge, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        check_reward_loop(genrm_config(judge, override))


def test_a_discriminative_model_is_not_served_as_a_judge(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from verl.utils.tiny_model import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="discriminative reward model"):
        start_genrm_server(genrm_config(str(tmp_path)))
