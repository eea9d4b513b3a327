"""Forward passes over ``prompts + responses`` batches that return per-response-token outputs.

Both paths compute the model's output only at the positions that predict a response token (position ``t``
predicts token ``t + 1``), so the vocabulary projection never runs on prompt positions:

- padded: the usual ``[B, T]`` forward with ``logits_to_keep = R + 1``;
- packed (``use_remove_padding``): valid tokens of all rows concatenated into one ``[1, N]`` row whose
  ``position_ids`` restart at 0 for each sequence; transformers' attention then keeps sequences apart
  (block-diagonal causal mask), so results equal the padded computation while padding costs nothing.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from verl.trainer.ppo.core_algos import entropy_from_logits

__all__ = ["response_logits", "response_values", "log_probs_from_logits"]


def _predicts_response(attention_mask: torch.Tensor, response_length: int) -> torch.Tensor:
    """``(B, T)`` bool: position ``t`` is valid and the token at ``t + 1`` is a valid response token."""
    B, T = attention_mask.shape
    keep = torch.zeros_like(attention_mask, dtype=torch.bool)
    nxt = attention_mask[:, 1:].bool()  # (B, T-1): validity of token t+1
    nxt[:, : T - 1 - response_length] = False  # token t+1 must lie in the response region
    keep[:, :-1] = nxt & attention_mask[:, :-1].bool()
    return keep


@functools.cache
def _takes_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


def _run(model: nn.Module, batch: dict[str, torch.Tensor], response_length: int, packed: bool):
    """Model outputs at the positions that predict response tokens, row-major, plus the ``(B, R)`` mask of
    response tokens those outputs belong to and the matching target token ids."""
    input_ids, attention_mask, position_ids = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    R = response_length
    keep = _predicts_response(attention_mask, R)  # (B, T)
    out_mask = keep[:, -R - 1 : -1]  # (B, R): which response tokens get an output
    targets = input_ids[:, -R:][out_mask]  # (N_keep,)
    takes_keep = _takes_logits_to_keep(type(model))
    if packed:
        valid = attention_mask.bool()
        ids = input_ids[valid].unsqueeze(0)  # (1, N)
        pos = position_ids[valid].unsqueeze(0)  # (1, N)
        keep_flat = keep[valid]  # (N,) in the same row-major order
        kwargs = {"logits_to_keep": keep_flat.nonzero().squeeze(-1)} if takes_keep else {}
        out = model(input_ids=ids, position_ids=pos, use_cache=False, **kwargs).logits[0]
        return (out if takes_keep else out[keep_flat]), out_mask, targets
    kwargs = {"logits_to_keep": R + 1} if takes_keep else {}
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, **kwargs).logits
    out = out[:, -R - 1 : -1]  # (B, R, V): position t predicts response token t+1
    return out[out_mask], out_mask, targets


def log_probs_from_logits(logits: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """``log softmax(logits)[target]`` per row, in float32 one ``chunk_size x V`` block at a time.

    Args:
        logits: ``(N, V)`` any float dtype. targets: ``(N,)`` token ids.
    Returns:
        ``(N,)`` float32 log-probabilities.
    """
    out = []
    for lo in range(0, logits.shape[0], chunk_size):
        block = logits[lo : lo + chunk_size].float()  # (n, V)
        picked = block.gather(-1, targets[lo : lo + chunk_size, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(block, dim=-1))
    return torch.cat(out) if out else logits.new_zeros(0, dtype=torch.float32)


def response_logits(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    response_length: int,
    temperature: float,
    packed: bool,
    calculate_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the response tokens under ``softmax(logits / temperature)``.

    Args:
        batch: ``input_ids``, ``attention_mask``, ``position_ids``: ``(B, T)`` with the last ``R`` columns the
            right-padded responses.
    Returns:
        ``log_probs``: ``(B, R)`` float32, 0 on padding; ``entropy``: ``(B, R)`` or None.
    """
    logits, out_mask, targets = _run(model, batch, response_length, packed)
    logits = logits / temperature  # (N_keep, V)
    log_probs = torch.zeros(out_mask.shape, dtype=torch.float32, device=logits.device)
    log_probs[out_mask] = log_probs_from_logits(logits, targets)
    entropy = None
    if calculate_entropy:
        entropy = torch.zeros(out_mask.shape, dtype=torch.float32, device=logits.device)
        entropy[out_mask] = entropy_from_logits(logits).float()
    return log_probs, entropy


def response_values(model: nn.Module, batch: dict[str, torch.Tensor], response_length: int, packed: bool) -> torch.Tensor:
    """``(B, R)`` float32 value estimates V(s_t) for the state before each response token (0 on padding)."""
    out, out_mask, _ = _run(model, batch, response_length, packed)
    values = torch.zeros(out_mask.shape, dtype=torch.float32, device=out.device)
    values[out_mask] = out.squeeze(-1).float()
    return values
