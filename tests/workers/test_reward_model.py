"""RewardModelWorker: scores on the last valid response token, equal to a plain transformers forward; re-templating
for a reward model with its own tokenizer; the same scores through a Ray worker group of 2 ranks (FSDP2, gloo)."""

import os

import pytest
import torch

from verl import DataProto
from verl.workers.batching import token_balanced_partitions
from verl.workers.reward_model import RewardModelWorker, last_token_index

# The reward model's own chat format: different markers and roles than the policy's ChatML, so its token ids
# (and even the number of tokens) differ from the policy's for the same conversation.
RM_TEMPLATE = "{% for m in messages %}### {{ m['role'] | upper }}:\n{{ m['content'] }}\n{% endfor %}### END"

CHATS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Natalia sold clips."}],
    [{"role": "user", "content": "How many clips did Natalia sell in May?"}],
    [{"role": "user", "content": "The quick brown fox"}],
    [{"role": "user", "content": "Let's think step by step."}],
]
RESPONSES = ["2 + 3 = 5. #### 5", "She sold 48 / 2 = 24 clips in May.", "24", "jumps over the lazy dog.",
             "The answer is the number of apples left in the basket."]


def build_reward_model(save_dir, tokenizer, seed):
    """A token-classification model with one label (its score head saved, so every load is the same model)."""
    from transformers import AutoModelForTokenClassification

    from verl.utils.tiny_model import build_tiny_model

    lm_dir = build_tiny_model(str(save_dir) + "_lm", tokenizer, arch="qwen2", num_layers=2, seed=seed)
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(lm_dir, num_labels=1)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # scores of order 1, well above float noise
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    return str(save_dir)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from verl.utils.tiny_model import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("rm")
    policy_tok = build_tiny_tokenizer(root / "policy_tok")
    rm_tok = build_tiny_tokenizer(extra_texts=RESPONSES, vocab_size=700, chat_template=RM_TEMPLATE)
    return {
        "policy_tok": str(root / "policy_tok"),
        "same_tok_rm": build_reward_model(root / "rm_same", policy_tok, seed=3),
        "own_tok_rm": build_reward_model(root / "rm_own", rm_tok, seed=4),
    }


def plain_score(model, ids: list[int]) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1, 0].item()


def chat_batch(policy_tok, response_length: int = 24) -> DataProto:
    """Left-padded chat prompts and right-padded responses (ending in EOS) in the policy's tokenizer, as
    rollout returns them, with the prompt messages in ``raw_prompt`` (``data.return_raw_chat=True``)."""
    prompt_ids = [policy_tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in CHATS]
    response_ids = [policy_tok(r, add_special_tokens=False)["input_ids"] + [policy_tok.eos_token_id] for r in RESPONSES]
    P, pad = max(map(len, prompt_ids)), policy_tok.pad_token_id
    assert max(map(len, response_ids)) <= response_length
    prompts = torch.tensor([[pad] * (P - len(p)) + p for p in prompt_ids])
    responses = torch.tensor([r + [pad] * (response_length - len(r)) for r in response_ids])
    attention_mask = torch.cat([prompts != pad, responses != pad], dim=-1).long()
    attention_mask[:, P:] = torch.tensor([[1] * len(r) + [0] * (response_length - len(r)) for r in response_ids])
    return DataProto.from_dict({
        "prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], -1),
        "attention_mask": attention_mask, "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
    }, {"raw_prompt": CHATS})


def rm_worker(path, **cfg):
    cfg = dict(cfg)
    worker = RewardModelWorker({"enable": True, "model": {"path": path, **cfg.pop("model", {})}, **cfg})
    worker.init_model()
    return worker


def assert_only_on_last_response_token(rm_scores, data, expected):
    R = data.batch["responses"].shape[-1]
    last = data.batch["attention_mask"][:, -R:].sum(-1) - 1
    rows = torch.arange(len(data))
    torch.testing.assert_close(rm_scores[rows, last], torch.tensor(expected), atol=1e-5, rtol=0)
    rm_scores = rm_scores.clone()
    rm_scores[rows, last] = 0
    assert (rm_scores == 0).all(), "scores must sit on the last valid response token only"


@pytest.mark.parametrize("cfg", [
    {"micro_batch_size_per_gpu": 2},
    {"micro_batch_size_per_gpu": 4, "model": {"use_remove_padding": True}},
    {"use_dynamic_bsz": True, "forward_max_token_len_per_gpu": 20, "model": {"use_remove_padding": True}},
], ids=["padded", "packed", "dynamic_bsz"])
def test_scores_sit_on_the_last_valid_response_token(models, make_batch, cfg):
    from transformers import AutoModelForTokenClassification

    data = make_batch(n=6, seed=7)  # prompts and responses of varying lengths
    out = rm_worker(models["same_tok_rm"], **cfg).compute_rm_score(data)
    model = AutoModelForTokenClassification.from_pretrained(models["same_tok_rm"]).eval()
    mask = data.batch["attention_mask"].bool()
    expected = [plain_score(model, data.batch["input_ids"][i][mask[i]].tolist()) for i in range(len(data))]
    assert out.batch["rm_scores"].shape == (6, 7)
    assert len(set(round(s, 4) for s in expected)) == 6  # distinct scores: a row mix-up cannot pass
    assert_only_on_last_response_token(out.batch["rm_scores"], data, expected)


def hand_retemplated_ids(rm_tok, chat, response):
    text = rm_tok.apply_chat_template([*chat, {"role": "assistant", "content": response}], tokenize=False)
    return rm_tok(text, add_special_tokens=False)["input_ids"]


def test_retemplating_equals_scoring_the_hand_retemplated_text(models):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    policy_tok = AutoTokenizer.from_pretrained(models["policy_tok"])
    rm_tok = AutoTokenizer.from_pretrained(models["own_tok_rm"])
    data = chat_batch(policy_tok)
    worker = rm_worker(models["own_tok_rm"], micro_batch_size_per_gpu=2, model={"input_tokenizer": models["policy_tok"]})
    rm_scores = worker.compute_rm_score(data).batch["rm_scores"]

    model = AutoModelForTokenClassification.from_pretrained(models["own_tok_rm"]).eval()
    hand = [hand_retemplated_ids(rm_tok, c, r) for c, r in zip(CHATS, RESPONSES)]
    policy_text_ids = data.batch["input_ids"][0][data.batch["attention_mask"][0].bool()].tolist()
    assert hand[0] != policy_text_ids  # the reward model really sees different tokens than the policy produced
    assert_only_on_last_response_token(rm_scores, data, [plain_score(model, ids) for ids in hand])

    # max_length truncates on the left: the end of the response, where the score is read, is kept
    truncated = rm_worker(models["own_tok_rm"], max_length=12, model={"input_tokenizer": models["policy_tok"]})
    scores = truncated.compute_rm_score(data).batch["rm_scores"]
    assert_only_on_last_response_token(scores, data, [plain_score(model, ids[-12:]) for ids in hand])


def test_retemplating_without_raw_prompt_names_the_fix(models):
    from transformers import AutoTokenizer

    data = chat_batch(AutoTokenizer.from_pretrained(models["policy_tok"]))
    data.pop(non_tensor_batch_keys=["raw_prompt"])
    worker = rm_worker(models["own_tok_rm"], model={"input_tokenizer": models["policy_tok"]})
    with pytest.raises(ValueError, match="data.return_raw_chat=True"):
        worker.compute_rm_score(data)


def test_last_token_index_handles_left_and_right_padding():
    mask = torch.tensor([[0, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [3, 4, 1]


def test_two_rank_worker_group_matches_one_process(models):
    """FSDP2 over 2 gloo ranks, an uneven batch (5 rows) and token-budget micro-batches whose count differs per
    rank before the ranks agree on one: the same scores as one process."""
    ray = pytest.importorskip("ray")
    from transformers import AutoTokenizer

    from verl.single_controller.ray import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup

    data = chat_batch(AutoTokenizer.from_pretrained(models["policy_tok"]))
    cfg = {"use_dynamic_bsz": True, "forward_max_token_len_per_gpu": 150,
           "model": {"input_tokenizer": models["policy_tok"], "use_remove_padding": True}}
    local = rm_worker(models["own_tok_rm"], **cfg)
    expected = local.compute_rm_score(data)
    # rank 0 gets rows 0-2, rank 1 rows 3-4 plus row 0 again as padding: alone they would pack into 2 and 1
    # micro-batches; FSDP's per-layer all-gathers only line up because the ranks agree on 2
    lengths = local._retemplate(data).batch["attention_mask"].sum(-1).tolist()
    counts = [len(token_balanced_partitions(ls, 150)) for ls in (lengths[:3], lengths[3:] + lengths[:1])]
    assert counts == [2, 1]

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}})
    try:
        pool = RayResourcePool(process_on_nodes=[2], use_gpu=False)
        group_cfg = {"enable": True, **cfg, "model": {"path": models["own_tok_rm"], **cfg["model"]}}
        wg = RayWorkerGroup(pool, RayClassWithInitArgs(RewardModelWorker, group_cfg))
        wg.init_model()
        got = wg.compute_rm_score(data)
        torch.testing.assert_close(got.batch["rm_scores"], expected.batch["rm_scores"], atol=1e-5, rtol=0)
        wg.kill()
    finally:
        ray.shutdown()
