"""Response log-probs / values: padded and packed forwards equal a plain per-sequence transformers forward."""

import pytest
import torch

from verl.workers.forward import log_probs_from_logits, response_logits, response_values
from verl.workers.fsdp import load_hf_model


def reference_log_probs(model, batch, temperature):
    """One unpadded sequence at a time, straight through transformers."""
    R = batch.batch["responses"].shape[-1]
    out = torch.zeros(len(batch), R)
    ent = torch.zeros(len(batch), R)
    for i in range(len(batch)):
        mask = batch.batch["attention_mask"][i].bool()
        ids = batch.batch["input_ids"][i][mask][None]
        n_resp = int(batch.batch["response_mask"][i].sum())
        logits = model(input_ids=ids).logits[0].float() / temperature  # (L, V)
        logp = torch.log_softmax(logits[-n_resp - 1 : -1], -1)
        out[i, :n_resp] = logp.gather(-1, ids[0, -n_resp:, None]).squeeze(-1)
        ent[i, :n_resp] = -(logp.exp() * logp).sum(-1)
    return out, ent


@pytest.mark.parametrize("packed", [False, True])
def test_log_probs_match_transformers(tiny_model_dir, make_batch, packed):
    model = load_hf_model(tiny_model_dir).eval()
    batch = make_batch(n=6)
    with torch.no_grad():
        expected, expected_ent = reference_log_probs(model, batch, temperature=0.7)
        got, ent = response_logits(model, {k: batch.batch[k] for k in ("input_ids", "attention_mask", "position_ids")},
                                   batch.batch["responses"].shape[-1], 0.7, packed=packed, calculate_entropy=True)
    mask = batch.batch["response_mask"].bool()
    assert (got[~mask] == 0).all()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, expected_ent, atol=1e-5, rtol=0)


def test_packed_values_equal_padded(tiny_model_dir, make_batch):
    model = load_hf_model(tiny_model_dir, kind="value").eval()
    batch = make_batch(n=5, seed=3)
    inputs = {k: batch.batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        padded = response_values(model, inputs, 7, packed=False)
        packed = response_values(model, inputs, 7, packed=True)
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
    assert padded.abs().sum() > 0


def test_chunked_log_probs_equal_full_log_softmax():
    logits = torch.randn(37, 11)
    targets = torch.randint(0, 11, (37,))
    full = torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(log_probs_from_logits(logits, targets, chunk_size=8), full)


def test_override_config_attn_implementation_is_the_attention_implementation(tiny_model_dir):
    # verl reads the attention implementation from model.override_config.attn_implementation
    model = load_hf_model(str(tiny_model_dir), attn_implementation="sdpa",
                          override_config={"attn_implementation": "eager", "attention_dropout": 0.0})
    assert model.config._attn_implementation == "eager"
    assert model.config.attention_dropout == 0.0
