"""Offline generation: greedy output equals transformers.generate on each templated prompt; n samples per row."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from verl.trainer.main_generation import main

QUESTIONS = ["What is 2 + 3?", "Natalia sold clips to 48 of her friends.", "Let's think step by step.",
             "How many clips did she sell?", "The answer is"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_model, build_tiny_tokenizer

    root = tmp_path_factory.mktemp("gen")
    tokenizer = build_tiny_tokenizer()
    # a wide initialisation gives a random model peaked, prompt-dependent next-token distributions
    model_dir = build_tiny_model(root / "model", tokenizer, num_layers=2, seed=1, extra_config={"initializer_range": 0.3})
    rows = [{"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": q}], "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": str(i)}, "extra_info": {"index": i}}
            for i, q in enumerate(QUESTIONS)]
    pq.write_table(pa.Table.from_pylist(rows), root / "prompts.parquet")
    return root, model_dir, tokenizer


def hf_greedy(model_dir, tokenizer, question, max_new_tokens):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def gen_args(root, model_dir, out, *extra):
    return [f"data.path={root / 'prompts.parquet'}", f"data.output_path={out}", f"model.path={model_dir}",
            "rollout.prompt_length=32", "rollout.response_length=12", "rollout.dtype=float32", "data.batch_size=2",
            *extra]


def test_greedy_generation_matches_transformers_generate(setup):
    root, model_dir, tokenizer = setup
    out = root / "greedy.parquet"
    main(gen_args(root, model_dir, out, "rollout.do_sample=false"))
    table = pq.read_table(out).to_pylist()
    assert [r["extra_info"]["index"] for r in table] == list(range(5))  # rows and their columns kept, in order
    assert table[0]["reward_model"] == {"style": "rule", "ground_truth": "0"}
    for row, question in zip(table, QUESTIONS):
        assert row["responses"] == [hf_greedy(model_dir, tokenizer, question, 12)]
    assert len({r["responses"][0] for r in table}) == 5 and all(r["responses"][0].strip() for r in table)


def test_n_samples_per_row_and_hf_backend(setup):
    root, model_dir, _ = setup
    out = root / "sampled.parquet"
    main(gen_args(root, model_dir, out, "data.n_samples=3", "rollout.temperature=1.0", "rollout.name=hf"))
    responses = pq.read_table(out).column("responses").to_pylist()
    assert len(responses) == 5 and all(len(r) == 3 and all(isinstance(s, str) for s in r) for r in responses)
    assert any(len(set(r)) > 1 for r in responses)  # sampled, not three copies of one response


def test_bad_settings_fail_before_loading(setup, capsys):
    root, model_dir, _ = setup
    with pytest.raises(SystemExit):
        main(gen_args(root, model_dir, root / "x.parquet", "data.n_samples=2", "rollout.do_sample=false"))
    assert "data.n_samples=2 with rollout.do_sample=false" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(gen_args(root, model_dir, root / "x.parquet", "rollout.n=4"))
    assert "rollout.n=4: set data.n_samples=4 instead" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(gen_args(root, model_dir, root / "x.parquet", "rollout.name=tgi"))
    assert "rollout.name='tgi' is not a rollout backend" in capsys.readouterr().err
    assert not os.path.exists(root / "x.parquet")
    with pytest.raises(SystemExit):
        main(["data.nsamples=2"])
    assert "unknown config key data.nsamples; did you mean data.n_samples?" in capsys.readouterr().err


def test_ray_worker_group_of_two_gives_the_same_greedy_output(setup):
    """With trainer.n_gpus_per_node=2 (CPU workers here) each batch is split over two rollout workers."""
    ray = pytest.importorskip("ray")
    root, model_dir, tokenizer = setup
    out = root / "ray.parquet"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    try:
        main(gen_args(root, model_dir, out, "rollout.do_sample=false", "trainer.n_gpus_per_node=2", "data.batch_size=3"))
    finally:
        ray.shutdown()
    responses = pq.read_table(out).column("responses").to_pylist()
    assert responses == [[hf_greedy(model_dir, tokenizer, q, 12)] for q in QUESTIONS]
