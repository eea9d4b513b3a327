"""Turning a ``[batch, response_len]`` loss matrix into one scalar, correctly under data parallelism.

How a caller uses the global counts (the FSDP actor/critic worker does exactly this):

1. For one mini-batch, before its micro-batches run, count over ALL its micro-batches on ALL ranks::

       tokens, seqs = agg_loss_counts(micro.response_mask)   # per micro-batch, summed locally
       # then all-reduce (SUM) both across data-parallel ranks

   ``global_num_tokens`` = valid tokens of the whole mini-batch, ``global_num_seqs`` = its sequences that
   have at least one valid token. Both may stay tensors on the device (no ``.item()`` needed).
2. Compute every micro-batch's loss with ``agg_loss(..., global_num_tokens=T, global_num_seqs=S)`` and
   call ``backward()`` on it as is: no division by the number of micro-batches. The losses of all
   micro-batches on all ranks then SUM to the loss of the whole mini-batch, so gradients do not depend on
   how it was split (1 rank x 8 micro-batches == 8 ranks x 1 micro-batch).
3. FSDP and DDP *average* gradients over the ``R`` data-parallel ranks; to get the gradient of that sum,
   multiply each micro-batch loss by ``R`` before ``backward()`` (the worker does it, not this module).

Without the global counts every mode normalises by this call's own counts (a plain single-batch mean).
"""

from __future__ import annotations

import torch

from verl.trainer.ppo.core_algos.masked import masked_sum

__all__ = ["LOSS_AGG_MODES", "agg_loss", "agg_loss_counts"]

#: The supported values of ``loss_agg_mode`` (config key ``actor_rollout_ref.actor.loss_agg_mode``).
LOSS_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")

Count = int | float | torch.Tensor


def check_loss_agg_mode(loss_agg_mode: str) -> None:
    """Raise a ``ValueError`` naming the known modes when ``loss_agg_mode`` is not one of them."""
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of {list(LOSS_AGG_MODES)}")


def agg_loss_counts(loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The local counts whose global sums are ``global_num_tokens`` and ``global_num_seqs``.

    Args:
        loss_mask: ``(B, T)`` response mask of one micro-batch.

    Returns:
        ``(num_tokens, num_seqs)``: 0-d float tensors, the number of valid tokens and of sequences with at
        least one valid token. Sum them over micro-batches and all-reduce over ranks.
    """
    valid = loss_mask != 0
    return valid.sum().to(torch.float32), valid.any(dim=-1).sum().to(torch.float32)


def _denominator(count: Count | None, fallback: torch.Tensor) -> torch.Tensor:
    if count is None:
        return fallback.clamp(min=1)
    return torch.as_tensor(count, dtype=fallback.dtype, device=fallback.device).clamp(min=1)


def _pick(ours: Count | None, verls: Count | None, names: str) -> Count | None:
    if ours is not None and verls is not None:
        raise ValueError(f"agg_loss: pass one of {names}, not both (they are the same count)")
    return ours if ours is not None else verls


def agg_loss(
    loss_mat: torch.Tensor,
    loss_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    dp_size: int = 1,
    batch_num_tokens: Count | None = None,
    global_batch_size: Count | None = None,
    loss_scale_factor: float | None = None,
    *,
    global_num_tokens: Count | None = None,
    global_num_seqs: Count | None = None,
) -> torch.Tensor:
    """Aggregate a per-token loss matrix into a scalar (verl's signature and modes).

    Modes (``m`` = mask, ``l`` = loss, sums over valid positions; ``N_tok``/``N_seq`` the global counts,
    ``D`` = ``dp_size``):

    - ``token-mean``: ``D * sum_it l_it / N_tok``: every token weighs the same (DAPO, Yu et al. 2025,
      arXiv:2503.14476).
    - ``token-sum``: ``D * sum_it l_it``: no normalisation.
    - ``seq-mean-token-sum``: ``D * sum_i (sum_t l_it) / N_seq``.
    - ``seq-mean-token-mean``: ``D * sum_i (sum_t l_it / |y_i|) / N_seq``: every sequence weighs the same
      (the original GRPO objective, Shao et al. 2024, arXiv:2402.03300).
    - ``seq-mean-token-sum-norm``: ``D * sum_i (sum_t l_it / L) / N_seq`` with a constant ``L`` =
      ``loss_scale_factor`` (default: the padded response length ``T``): Dr. GRPO's length-unbiased
      normalisation (Liu et al. 2025, arXiv:2503.20783). Pass ``loss_scale_factor=max_response_length``
      when micro-batches may be padded to different lengths, so ``L`` stays one constant.

    ``D`` undoes the gradient averaging of FSDP/DDP over ``dp_size`` ranks (verl's convention); with the
    default ``D = 1`` the caller scales instead (see the module docstring). Sequences without a valid token
    count for nothing, and a zero count gives a zero loss (verl would give NaN).

    Args:
        loss_mat: ``(B, T)`` per-token losses.
        loss_mask: ``(B, T)`` response mask (non-zero = the token counts).
        loss_agg_mode: one of :data:`LOSS_AGG_MODES`.
        dp_size: data-parallel ranks ``D``; above 1 the global count of the mode is required.
        batch_num_tokens: valid tokens of the whole mini-batch over all micro-batches and ranks
            (``token-mean``); ``None`` = this call's count. ``global_num_tokens`` is the same, by our name.
        global_batch_size: sequences with >= 1 valid token in the whole mini-batch (the ``seq-mean-*``
            modes); ``None`` = this call's count. ``global_num_seqs`` is the same, by our name.
        loss_scale_factor: the constant ``L`` of ``seq-mean-token-sum-norm``.

    Returns:
        0-d tensor. Summing it over micro-batches computed with the same global counts gives the loss of
        the whole mini-batch (times ``D``).
    """
    check_loss_agg_mode(loss_agg_mode)
    if loss_mat.shape != loss_mask.shape:
        raise ValueError(
            f"agg_loss: loss_mat has shape {tuple(loss_mat.shape)} but loss_mask has {tuple(loss_mask.shape)}"
        )
    num_tokens = _pick(global_num_tokens, batch_num_tokens, "global_num_tokens / batch_num_tokens")
    num_seqs = _pick(global_num_seqs, global_batch_size, "global_num_seqs / global_batch_size")
    if dp_size > 1 and (num_tokens if loss_agg_mode == "token-mean" else num_seqs if "seq" in loss_agg_mode else 0) is None:
        raise ValueError(f"agg_loss: dp_size={dp_size} > 1 needs the global count for {loss_agg_mode!r} "
                         "(batch_num_tokens for token-mean, global_batch_size for the seq-mean modes)")  # fmt: skip
    # Counts above 256 are not exact in bf16: reduce in at least float32.
    loss_mat = loss_mat.to(torch.promote_types(loss_mat.dtype, torch.float32))
    mask = loss_mask.to(loss_mat.dtype)
    if loss_agg_mode == "token-mean":
        return masked_sum(loss_mat, mask) / _denominator(num_tokens, mask.sum()) * dp_size
    if loss_agg_mode == "token-sum":
        return masked_sum(loss_mat, mask) * dp_size

    seq_token_sum = masked_sum(loss_mat, mask, dim=-1)  # (B,)
    tokens_per_seq = mask.sum(dim=-1)  # (B,)
    if loss_agg_mode == "seq-mean-token-sum":
        seq_losses = seq_token_sum
    elif loss_agg_mode == "seq-mean-token-mean":
        seq_losses = seq_token_sum / tokens_per_seq.clamp(min=1e-8)
    else:  # seq-mean-token-sum-norm
        scale = loss_mat.shape[-1] if loss_scale_factor is None else loss_scale_factor
        if scale <= 0:
            raise ValueError(f"loss_scale_factor must be > 0, got {scale}")
        seq_losses = seq_token_sum / scale
    seq_valid = (loss_mask != 0).any(dim=-1)  # (B,)
    seq_sum = torch.where(seq_valid, seq_losses, torch.zeros_like(seq_losses)).sum()
    return seq_sum / _denominator(num_seqs, seq_valid.sum().to(loss_mat.dtype)) * dp_size
