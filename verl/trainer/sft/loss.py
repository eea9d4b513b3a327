"""The SFT objective: token-mean negative log-likelihood of the assistant tokens of a global batch.

Position ``t - 1`` predicts token ``t``; a token is a *target* when ``loss_mask[t] = 1`` and ``t >= 1``. Each
micro-batch's loss is its summed NLL divided by the target count of the whole global batch (all micro-batches,
all ranks) and multiplied by the number of data-parallel ranks, because FSDP averages gradients over ranks:
the gradient then equals the token-mean over the global batch on one rank, however it is split.

Two forward layouts give the same numbers (up to float error):

- padded: ``(B, T)`` right-padded rows; the vocabulary projection runs on every position;
- packed (``use_remove_padding``): the valid tokens of all rows concatenated into one ``(1, N)`` row whose
  ``position_ids`` restart at 0 for each sequence (transformers then keeps sequences apart), and the vocabulary
  projection runs only at the positions that predict a target (``logits_to_keep``).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn

from verl.workers.attention import packed_forward_kwargs
from verl.workers.forward import log_probs_from_logits

__all__ = ["sft_loss", "target_log_probs", "target_mask"]


def target_mask(loss_mask: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` bool: token ``t`` is trained (assistant token, not padding, and ``t >= 1``)."""
    mask = loss_mask.bool() & attention_mask.bool()
    mask[:, 0] = False  # the first token has no position predicting it
    return mask


@functools.cache
def _takes_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


def target_log_probs(model: nn.Module, batch: dict[str, torch.Tensor], packed: bool, sp: Any = None) -> torch.Tensor:
    """Log-probabilities of the target tokens of a right-padded batch, in row-major order.

    Args:
        batch: ``input_ids``, ``attention_mask``, ``position_ids``, ``loss_mask``: ``(B, T)``, rows
            right-padded (valid tokens first).
        packed: run one ``(1, N)`` packed row instead of the padded ``(B, T)`` batch.
        sp: this rank's :class:`~verl.workers.parallel.ulysses.UlyssesGroup`; with size > 1 the packed row is
            split over the group and the log-probs gathered back (every rank returns all of them).
    Returns:
        ``(N_targets,)`` float32 ``log p(x_t | x_<t)`` for every target token.
    """
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    targets_mask = target_mask(batch["loss_mask"], attention_mask)  # (B, T)
    targets = input_ids[targets_mask]  # (N_targets,)
    if packed:
        valid = attention_mask.bool()
        ids = input_ids[valid].unsqueeze(0)  # (1, N)
        pos = batch["position_ids"][valid].unsqueeze(0)  # (1, N), restarting at 0 for each row
        # rows are right-padded, so a target's predictor is the token just before it in the packed row
        predictors = targets_mask[valid].nonzero().squeeze(-1) - 1  # (N_targets,)
        # sequence boundaries for a model switched by use_packed_attention (ignored by one that was not)
        shard = None
        if sp is not None and sp.size > 1:
            from verl.workers.parallel.ulysses import shard_packed_inputs

            local, predictors, targets, shard = shard_packed_inputs(
                {"input_ids": ids, "position_ids": pos}, valid.sum(-1).tolist(), predictors, targets, sp, ids.device)
            ids, pos = local.pop("input_ids"), local.pop("position_ids")
            bounds = local
        else:
            bounds = packed_forward_kwargs(valid.sum(-1).tolist(), ids.device)
        bounds = {k: v.to(ids.device) if torch.is_tensor(v) else v for k, v in bounds.items()}
        if _takes_logits_to_keep(type(model)):
            logits = model(input_ids=ids, position_ids=pos, use_cache=False, logits_to_keep=predictors,
                           **bounds).logits[0]
        else:
            logits = model(input_ids=ids, position_ids=pos, use_cache=False, **bounds).logits[0, predictors]
        if shard is not None:
            from verl.workers.parallel.ulysses import gather_kept

            return gather_kept(log_probs_from_logits(logits, targets), shard)
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=batch["position_ids"],
                    use_cache=False).logits  # (B, T, V)
        logits = out[:, :-1][targets_mask[:, 1:]]  # (N_targets, V): position t-1 predicts token t
    return log_probs_from_logits(logits, targets)


def sft_loss(log_probs: torch.Tensor, global_targets: torch.Tensor | float, dp_size: int) -> torch.Tensor:
    """Loss of one micro-batch whose gradients, summed over micro-batches and averaged over ``dp_size`` ranks,
    are those of the global token-mean NLL.

    Args:
        log_probs: ``(N,)`` log-probabilities of this micro-batch's target tokens.
        global_targets: target tokens in the whole global batch (all micro-batches, all ranks).
        dp_size: data-parallel ranks whose gradients FSDP averages.
    Returns:
        0-d tensor ``-sum(log_probs) / global_targets * dp_size``.
    """
    denominator = torch.as_tensor(global_targets, dtype=torch.float32, device=log_probs.device).clamp(min=1.0)
    return -log_probs.sum() / denominator * dp_size
