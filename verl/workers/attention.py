"""Attention over packed sequences whose cost is the sum of the squares of the sequence lengths.

A packed forward concatenates the valid tokens of ``B`` sequences into one ``[1, N]`` row. Left to itself,
transformers' ``sdpa`` path turns that row into a dense ``N x N`` block-diagonal mask and attends over all of
it (``N^2`` work and memory, and no flash kernel on a GPU). Here the model is switched to an attention function
registered with transformers' ``AttentionInterface`` that reads the sequence boundaries from the forward's
keyword arguments (``cu_seq_lens_q`` etc., the names transformers' own flash-attention path uses) and attends
within each sequence only, with one of these kernels (:func:`packed_attention_backend` picks one):

- ``flash_attn``: flash-attn's ``flash_attn_varlen_func``, where flash-attn is installed (accelerator, bf16/fp16);
- ``torch_varlen``: PyTorch's own ``varlen_attn`` (accelerator, bf16/fp16);
- ``buckets``: sequences sorted by length into buckets whose lengths lie within a factor of
  :data:`BUCKET_RATIO`; each bucket is gathered into a right-padded ``(n, H, L_max, D)`` batch and runs one causal
  ``scaled_dot_product_attention`` call (any device and dtype). Right padding needs no mask: a valid query never
  sees a later (padding) key. The cost stays within ``BUCKET_RATIO**2`` of the sum of squares, in a handful of
  kernel calls. Measured on CPU (docs/performance.md, "Packed attention") against a dense block-diagonal mask
  (4-40x slower), one SDPA call per sequence (as fast in single-threaded CPU time, but each call pays the
  kernel's fixed cost and thread fan-out: 3-5x slower on the quickstart's 256 short sequences) and flex attention
  in eager mode (it materialises the mask).

The model code is not touched: a model that was not switched, or a forward without boundaries, takes the plain
``sdpa`` path. Models loaded with a flash-attention implementation already read ``cu_seq_lens_*`` themselves.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PACKED_ATTENTION", "packed_attention_backend", "packed_forward_kwargs", "use_packed_attention"]

PACKED_ATTENTION = "verl_packed_sdpa"
_HALF = (torch.bfloat16, torch.float16)


BUCKET_RATIO = 1.5


@dataclass(frozen=True)
class PackedBuckets:
    """How the ``buckets`` kernel re-pads a packed row: ``gather`` ``(M,)`` picks, for every padded position of every
    bucket (bucket by bucket, row-major), a token of the row (padding repeats a valid token of its own sequence);
    ``scatter`` ``(N,)`` gives each token's position among those ``M``; ``shapes`` the ``(rows, length)`` of each
    bucket. Host integers and host tensors, built once per micro-batch (moved with the other inputs)."""

    gather: torch.Tensor
    scatter: torch.Tensor
    shapes: tuple[tuple[int, int], ...]


def bucket_layout(lengths: Sequence[int], ratio: float = BUCKET_RATIO) -> PackedBuckets:
    """Sort sequences by length into buckets whose lengths lie within ``ratio`` of the bucket's longest."""
    lengths_t = torch.tensor([int(n) for n in lengths], dtype=torch.long)
    starts = torch.cumsum(lengths_t, 0) - lengths_t
    order = torch.argsort(lengths_t, descending=True, stable=True).tolist()
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths_t[i] * ratio >= lengths_t[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    gathers, scatter, shapes, offset = [], torch.empty(int(lengths_t.sum()), dtype=torch.long), [], 0
    for group in groups:
        rows = torch.tensor(group, dtype=torch.long)
        longest = int(lengths_t[rows[0]])
        col = torch.arange(longest)
        valid = col[None] < lengths_t[rows, None]  # (n, L)
        token = starts[rows, None] + torch.minimum(col[None], lengths_t[rows, None] - 1)  # (n, L)
        gathers.append(token.reshape(-1))
        scatter[token[valid]] = offset + valid.reshape(-1).nonzero().squeeze(-1)
        shapes.append((len(group), longest))
        offset += len(group) * longest
    gather = torch.cat(gathers) if gathers else torch.zeros(0, dtype=torch.long)
    return PackedBuckets(gather, scatter, tuple(shapes))


def packed_forward_kwargs(lengths: Sequence[int], device: torch.device) -> dict:
    """Keyword arguments of a packed forward over sequences of ``lengths`` tokens (in row order).

    ``cu_seq_lens_*`` (``(B + 1,)`` int32 cumulative offsets) and ``max_length_*`` are the names transformers'
    flash-attention path reads; ``packed_buckets`` is the ``buckets`` kernel's re-padding layout (host tensors;
    move them with the batch). Built on the host once per micro-batch, so no kernel needs a device-to-host sync.
    """
    lengths = [int(n) for n in lengths]
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    longest = max(lengths, default=0)
    kwargs = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
    if packed_attention_backend(device, None) == "buckets":
        buckets = bucket_layout(lengths)
        kwargs.update(packed_gather=buckets.gather, packed_scatter=buckets.scatter, packed_shapes=buckets.shapes)
    return kwargs


def use_packed_attention(model: nn.Module, force: bool = False) -> None:
    """Switch a transformers model with ``sdpa``/``eager`` attention to the packed-aware attention (in place).

    Forwards without ``cu_seq_lens_q`` keep the usual masked ``sdpa`` computation, so the model still serves
    padded batches. Flash-attention models are left alone (they read ``cu_seq_lens_*`` already) unless ``force``
    (Ulysses sequence parallelism needs its all-to-all around this function, which runs flash-attn itself).
    """
    config = getattr(model, "config", None)
    if config is None:
        return
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager") and not force:
        return
    _register()
    model.set_attn_implementation(PACKED_ATTENTION)


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def mask(*args, attention_mask=None, **kwargs):
        # Packed rows come without a 2-D padding mask: boundaries travel as cu_seq_lens, so no dense mask is
        # built. A padded batch (a 2-D mask) gets sdpa's usual mask.
        if attention_mask is None:
            return None
        return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)

    AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)
    AttentionMaskInterface.register(PACKED_ATTENTION, mask)


@functools.cache
def _flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def packed_attention_backend(device: torch.device, dtype: torch.dtype | None) -> str:
    """The kernel a packed forward on ``device`` in ``dtype`` uses: ``flash_attn``, ``torch_varlen`` or ``buckets``
    (``dtype=None``: the kernel some dtype might use there, i.e. whether the bucket layout may be needed)."""
    if device.type == "cpu" or (dtype is not None and dtype not in _HALF):
        return "buckets"
    if _flash_attn_available():
        return "flash_attn"
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return "buckets"
    return "torch_varlen" if dtype is not None else "buckets"


def packed_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: ``query`` ``(1, H, N, D)``, ``key``/``value`` ``(1, Hkv, N, D)``;
    returns ``(1, N, H, D)``. Without ``cu_seq_lens_q`` (a padded batch, a generate step) it is plain ``sdpa``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    ulysses_group = kwargs.pop("ulysses_group", None)
    if ulysses_group is not None:  # sequence parallelism: this rank holds a slice of the packed row
        from verl.workers.parallel.ulysses import ulysses_attention

        return ulysses_attention(packed_attention_forward, ulysses_group, module, query, key, value, attention_mask,
                                 dropout=dropout, scaling=scaling, sliding_window=sliding_window, **kwargs)
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None and attention_mask is None:  # a caller that packed without boundaries (a host sync)
        lengths = _lengths_from_positions(kwargs.get("position_ids"))
        if lengths is not None:
            kwargs.update(packed_forward_kwargs(lengths, query.device))
            cu = kwargs["cu_seq_lens_q"].to(query.device)
    if cu is None or attention_mask is not None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      sliding_window=sliding_window, **kwargs)
    if not getattr(module, "is_causal", True):
        raise NotImplementedError("packed attention is causal; load non-causal models with padding")
    backend = packed_attention_backend(query.device, query.dtype)
    window = (sliding_window - 1, 0) if sliding_window else (-1, 0)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (N, H, D), (N, Hkv, D)
    if backend == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        max_len = kwargs["max_length_q"]
        out = flash_attn_varlen_func(q, k, v, cu, cu, max_len, max_len, dropout_p=dropout, softmax_scale=scaling,
                                     causal=True, window_size=window)
    elif backend == "torch_varlen":
        from torch.nn.attention.varlen import varlen_attn

        max_len = kwargs["max_length_q"]
        out = varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scaling, window_size=window,
                          enable_gqa=k.shape[1] != q.shape[1])
    else:
        if "packed_gather" not in kwargs:  # boundaries without the bucket layout: build it (a host sync)
            kwargs.update(packed_forward_kwargs(torch.diff(cu).tolist(), torch.device("cpu")))
        gather, scatter = (kwargs[name].to(q.device) for name in ("packed_gather", "packed_scatter"))
        out = _buckets(q, k, v, gather, scatter, kwargs["packed_shapes"], dropout, scaling, sliding_window)
    return out.unsqueeze(0), None  # (1, N, H, D)


def _buckets(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gather: torch.Tensor, scatter: torch.Tensor,
             shapes: Sequence[tuple[int, int]], dropout: float, scaling: float | None,
             sliding_window: int | None) -> torch.Tensor:
    """Causal attention within each sequence over re-padded length buckets (see :class:`PackedBuckets`).

    Args:
        q: ``(N, H, D)``; k, v: ``(N, Hkv, D)`` packed rows.
    Returns:
        ``(N, H, D)``.
    """
    H, Hkv, D = q.shape[1], k.shape[1], q.shape[2]
    qp, kp, vp = (_Repad.apply(t, gather, scatter) for t in (q, k, v))  # (M, H|Hkv, D)
    outs, start = [], 0
    for rows, length in shapes:
        sl = slice(start, start + rows * length)
        start += rows * length
        qb = qp[sl].view(rows, length, H, D).transpose(1, 2)  # (n, H, L, D)
        kb, vb = (t[sl].view(rows, length, Hkv, D).transpose(1, 2) for t in (kp, vp))  # (n, Hkv, L, D)
        mask = None
        if sliding_window and length > sliding_window:
            i = torch.arange(length, device=q.device)
            mask = (i[:, None] >= i[None]) & (i[:, None] - i[None] < sliding_window)  # (L, L)
        out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout, scale=scaling,
                                             is_causal=mask is None, enable_gqa=Hkv != H)  # (n, H, L, D)
        outs.append(out.transpose(1, 2).reshape(rows * length, H, D))
    return _Unpad.apply(torch.cat(outs), scatter)  # (N, H, D)


class _Repad(torch.autograd.Function):
    """``x.index_select(0, gather)`` whose backward reads each token's gradient from its own slot.

    Padding slots get no gradient: their queries' outputs are dropped (:class:`_Unpad`) and, being after every
    valid position of their row, their keys and values are never attended by a valid query. So the backward is a
    plain ``index_select`` instead of ``index_select``'s scatter-add over the duplicated padding indices.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, gather: torch.Tensor, scatter: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scatter)
        return x.index_select(0, gather)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (scatter,) = ctx.saved_tensors
        return grad.index_select(0, scatter), None, None


class _Unpad(torch.autograd.Function):
    """``y.index_select(0, scatter)`` (the tokens' own slots); backward puts the gradient there, zeros elsewhere."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, scatter: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scatter)
        ctx.rows = y.shape[0]
        return y.index_select(0, scatter)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (scatter,) = ctx.saved_tensors
        out = grad.new_zeros((ctx.rows, *grad.shape[1:]))
        out[scatter] = grad
        return out, None


def _lengths_from_positions(position_ids: torch.Tensor | None) -> list[int] | None:
    """Sequence lengths of a packed ``(1, N)`` row whose positions restart at 0 per sequence (None when the row
    is one sequence). A device-to-host sync: only for callers that pack without passing boundaries."""
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape[0] != 1:
        return None
    starts = (position_ids[0] == 0).nonzero().squeeze(-1).tolist()
    if len(starts) <= 1 or starts[0] != 0:
        return None
    ends = starts[1:] + [position_ids.shape[1]]
    return [e - s for s, e in zip(starts, ends)]
