"""Masked reductions over ``[batch, response_len]`` tensors.

Every function takes a ``mask`` of the same shape as its input (bool, int or float; non-zero = valid) and
never syncs with the host, so it is safe inside the training hot path.
"""

from __future__ import annotations

import torch

__all__ = ["masked_sum", "masked_mean", "masked_var", "masked_whiten"]


def _check_same_shape(values: torch.Tensor, mask: torch.Tensor, what: str) -> None:
    if values.shape != mask.shape:
        raise ValueError(
            f"{what}: values have shape {tuple(values.shape)} but the mask has shape {tuple(mask.shape)}; "
            "pass a mask of exactly the same shape (e.g. response_mask for [batch, response_len] tensors)"
        )


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None, *, axis: int | None = None) -> torch.Tensor:
    """Sum of ``values * mask``; positions where ``mask == 0`` contribute exactly 0 (even if inf/nan there).

    Args:
        values: ``(B, T)`` (any shape).
        mask: same shape as ``values``; a float mask acts as per-element weights.
        dim: reduce over this dim, or over everything when ``None`` (``axis`` is verl's name for it).
    """
    dim = axis if dim is None else dim
    _check_same_shape(values, mask, "masked_sum")
    weighted = torch.where(mask != 0, values * mask.to(values.dtype), torch.zeros_like(values))
    return weighted.sum() if dim is None else weighted.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None, *, axis: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over valid positions; 0 where there is none (no division by zero). ``axis`` = ``dim``."""
    dim = axis if dim is None else dim
    count = mask.to(values.dtype).sum() if dim is None else mask.to(values.dtype).sum(dim=dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1e-8)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``values`` over all valid positions (Bessel-corrected when ``unbiased``).

    With a single valid element the unbiased variance is taken as 0 rather than dividing by zero.
    """
    mean = masked_mean(values, mask)
    sq_dev = masked_sum((values - mean) ** 2, mask)
    count = mask.to(values.dtype).sum()
    denom = (count - 1).clamp(min=1) if unbiased else count.clamp(min=1e-8)
    return sq_dev / denom


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """``(values - mean) / sqrt(var + 1e-8)`` with mean and unbiased variance taken over valid positions.

    Used to normalise advantages over the whole batch (Schulman et al. 2017, PPO, arXiv:1707.06347).
    With ``shift_mean=False`` the mean is added back (only the scale is normalised). Invalid positions
    get whitened values too; callers multiply by the mask when they need zeros there.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask, unbiased=True)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean
