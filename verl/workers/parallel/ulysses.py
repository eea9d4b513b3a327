"""Ulysses sequence parallelism (Jacobs et al. 2023, "DeepSpeed Ulysses"), for packed forwards.

The ``sp`` ranks of one group hold the same micro-batch. Its packed ``(1, N)`` row is padded to a multiple of
``sp`` and cut along the sequence: rank ``r`` runs the model on tokens ``[r * N / sp, (r + 1) * N / sp)``. Every
layer except attention is per-token, so it needs nothing. Attention swaps the sequence shard for a head shard
with one all-to-all (each rank then holds the *whole* sequence for ``H / sp`` query heads and ``Hkv / sp``
key/value heads), attends within each packed sequence as usual, and swaps back with a second all-to-all.

The model code never sees any of this: :func:`shard_packed_inputs` slices the forward's inputs and adds
``ulysses_group`` to its keyword arguments, which transformers passes through to the attention function
(:func:`verl.workers.attention.packed_attention_forward` hands such calls to :func:`ulysses_attention`).
Per-token outputs (log-probs, entropies, values) are computed on each rank's own positions and then gathered
back into the full row with :func:`gather_kept` (the padding added for the cut never has an output).

Gradients: the loss is computed in full on every rank of a group; each rank back-propagates it through its own
positions only (the gather's backward keeps this rank's slice), and the all-to-all's backward returns the
attention gradients to the ranks that own the tokens. Summed over the group's ranks (FSDP's reduction) that is
the whole micro-batch's gradient, as with one rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from verl.workers.parallel.groups import RankGroup, check_heads, make_rank_group

__all__ = ["SequenceShard", "UlyssesGroup", "check_heads", "gather_kept", "make_ulysses_group", "shard_packed_inputs",
           "ulysses_attention"]


UlyssesGroup = RankGroup  # this rank's sequence-parallel group (consecutive ranks, see :mod:`.groups`)
make_ulysses_group = make_rank_group


@dataclass(frozen=True)
class SequenceShard:
    """How a packed micro-batch's kept outputs are spread over the group: ``counts[r]`` on rank ``r``, in row order
    (so concatenating the ranks' outputs gives the full row's)."""

    group: UlyssesGroup
    counts: tuple[int, ...]


def shard_packed_inputs(inputs: dict, lengths: Sequence[int], keep: torch.Tensor, targets: torch.Tensor,
                        sp: UlyssesGroup, device: torch.device) -> tuple[dict, torch.Tensor, torch.Tensor, SequenceShard]:
    """This rank's slice of a packed forward.

    Args:
        inputs: ``input_ids``/``position_ids`` ``(1, N)`` (host). lengths: the packed sequences' lengths.
        keep: ``(K,)`` sorted positions of the row with an output; targets: ``(K,)`` their target tokens.
    Returns:
        the local inputs (``(1, N_pad / sp)`` plus the full row's boundaries, the padding as one more sequence,
        and ``ulysses_group``), the local ``keep`` (local coordinates) and ``targets``, and the shard's layout.
    """
    from verl.workers.attention import packed_forward_kwargs

    n = inputs["input_ids"].shape[1]
    pad = -n % sp.size
    chunk = (n + pad) // sp.size
    input_ids = torch.cat([inputs["input_ids"], inputs["input_ids"].new_zeros(1, pad)], 1)  # (1, N_pad)
    position_ids = torch.cat([inputs["position_ids"], torch.arange(pad, dtype=inputs["position_ids"].dtype)[None]], 1)
    lo = sp.rank * chunk
    local = {"input_ids": input_ids[:, lo : lo + chunk], "position_ids": position_ids[:, lo : lo + chunk],
             **packed_forward_kwargs([*lengths, *([pad] if pad else [])], device), "ulysses_group": sp.group}
    owner = torch.div(keep, chunk, rounding_mode="floor")  # (K,) the rank holding each kept position
    counts = tuple(torch.bincount(owner, minlength=sp.size).tolist())
    mine = owner == sp.rank
    return local, keep[mine] - lo, targets[mine], SequenceShard(sp, counts)


def _all_to_all(x: torch.Tensor, group, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    """Split ``x`` along ``scatter_dim`` into one chunk per rank, send chunk ``j`` to rank ``j``, and concatenate
    what arrives along ``gather_dim`` (in rank order)."""
    size = dist.get_world_size(group)
    send = torch.stack(x.chunk(size, scatter_dim))  # (sp, ...chunk)
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return torch.cat(recv.unbind(0), gather_dim)


class _SeqAllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group, scatter_dim: int, gather_dim: int) -> torch.Tensor:
        ctx.group, ctx.dims = group, (scatter_dim, gather_dim)
        return _all_to_all(x, group, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        scatter_dim, gather_dim = ctx.dims
        return _all_to_all(grad.contiguous(), ctx.group, gather_dim, scatter_dim), None, None, None


def ulysses_attention(attention_fn: Callable, group, module, query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, attention_mask, **kwargs) -> tuple[torch.Tensor, None]:
    """``attention_fn`` over the full sequence for this rank's heads.

    ``query`` ``(1, H, N / sp, D)`` and ``key``/``value`` ``(1, Hkv, N / sp, D)`` (this rank's tokens, all heads)
    become ``(1, H / sp, N, D)`` / ``(1, Hkv / sp, N, D)``; ``attention_fn`` returns ``(1, N, H / sp, D)``, which
    goes back to ``(1, N / sp, H, D)``.
    """
    if attention_mask is not None:
        raise ValueError("Ulysses sequence parallelism runs packed forwards only (model.use_remove_padding=true)")
    q, k, v = (_SeqAllToAll.apply(t.contiguous(), group, 1, 2) for t in (query, key, value))
    out, _ = attention_fn(module, q, k, v, None, **kwargs)  # (1, N, H / sp, D)
    return _SeqAllToAll.apply(out.contiguous(), group, 1, 2), None  # (1, N / sp, H, D)


class _GatherKept(torch.autograd.Function):
    """Concatenate the group's ``(counts[r],)`` outputs in rank order; backward keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, shard: SequenceShard) -> torch.Tensor:
        counts, sp = shard.counts, shard.group
        ctx.span = (sum(counts[: sp.rank]), counts[sp.rank])
        width = max(counts)
        padded = torch.cat([x, x.new_zeros(width - x.shape[0], *x.shape[1:])])
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous(), group=sp.group)
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        start, count = ctx.span
        return grad[start : start + count], None


def gather_kept(x: torch.Tensor | None, shard: SequenceShard | None) -> torch.Tensor | None:
    """``(K,)`` outputs of the whole row from each rank's ``(counts[rank],)`` (identity without a shard)."""
    if x is None or shard is None:
        return x
    return _GatherKept.apply(x, shard)
