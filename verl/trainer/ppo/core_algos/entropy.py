"""Token entropy of the policy, computed in row chunks so a 150k-token vocabulary does not need a second
full-size float32 copy of the logits."""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from verl.trainer.ppo.core_algos.aggregation import Count, agg_loss

__all__ = ["compute_entropy_loss", "entropy_from_logits"]


def _entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    """``(N, V) -> (N,)``: ``H = logsumexp(z) - sum softmax(z) * z``, in at least float32."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    probs = torch.softmax(z, dim=-1)
    return torch.logsumexp(z, dim=-1) - (probs * z).sum(dim=-1)


def entropy_from_logits(logits: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` over the last dim.

    ``H(p) = -sum_v p_v log p_v = logsumexp(z) - sum_v p_v z_v``. Rows are processed ``chunk_size`` at a
    time in (at least) float32, so the float32 temporaries are ``chunk_size x V`` rather than the whole logits; under
    autograd each chunk is checkpointed (recomputed in backward) so those temporaries are not kept either.

    Args:
        logits: ``(..., V)``, any float dtype.
        chunk_size: rows per chunk (``> 0``).

    Returns:
        ``(...)`` entropies in float32 (float64 for float64 logits).
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    rows = logits.reshape(-1, logits.shape[-1])  # (N, V)
    track_grad = torch.is_grad_enabled() and logits.requires_grad
    chunks = []
    for start in range(0, rows.shape[0], chunk_size):
        chunk = rows[start : start + chunk_size]
        if track_grad:
            chunks.append(checkpoint(_entropy_rows, chunk, use_reentrant=False))
        else:
            chunks.append(_entropy_rows(chunk))
    if not chunks:
        return logits.new_zeros(logits.shape[:-1], dtype=torch.promote_types(logits.dtype, torch.float32))
    return torch.cat(chunks).view(logits.shape[:-1])


def compute_entropy_loss(
    logits: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    global_num_tokens: Count | None = None,
    global_num_seqs: Count | None = None,
    loss_scale_factor: float | None = None,
) -> torch.Tensor:
    """The aggregated token entropy of the response (the actor subtracts ``entropy_coeff`` times it).

    Args:
        logits: ``(B, T, V)`` response logits.
        response_mask: ``(B, T)``.
        loss_agg_mode, global_num_tokens, global_num_seqs, loss_scale_factor: see :func:`agg_loss`.

    Returns:
        0-d tensor (an entropy bonus encourages exploration; Williams & Peng 1991).
    """
    token_entropy = entropy_from_logits(logits)  # (B, T)
    return agg_loss(
        token_entropy,
        response_mask,
        loss_agg_mode,
        global_num_tokens=global_num_tokens,
        global_num_seqs=global_num_seqs,
        loss_scale_factor=loss_scale_factor,
    )
