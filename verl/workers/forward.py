"""Forward passes over ``prompts + responses`` batches that return per-response-token outputs.

Both paths compute the model's output only at the positions that predict a response token (position ``t``
predicts token ``t + 1``), so the vocabulary projection never runs on prompt positions:

- padded: the usual ``[B, T]`` forward with ``logits_to_keep = R + 1``;
- packed (``use_remove_padding``): valid tokens of all rows concatenated into one ``[1, N]`` row whose
  ``position_ids`` restart at 0 for each sequence, with the sequence boundaries passed as ``cu_seq_lens_*``;
  a model switched by :func:`verl.workers.attention.use_packed_attention` then attends within each sequence
  (cost: the sum of the squared lengths), so results equal the padded computation while padding costs nothing.

Everything that selects or scatters (which positions are kept, where outputs go) is computed on the host from
the CPU batch before the forward, so a micro-batch needs no device-to-host sync. Log-probs go through
:class:`_LogSoftmaxPick`, which keeps only the logits for backward (no fp32 copy) and recomputes the softmax
there chunk by chunk.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from verl.workers.attention import packed_forward_kwargs

__all__ = ["ResponseLayout", "log_probs_from_logits", "log_probs_and_entropy", "response_layout", "response_logits",
           "response_values"]

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")
_CHUNK_ELEMENTS = 1 << 25  # fp32 elements of one log-softmax chunk (128 MiB)


@dataclass
class ResponseLayout:
    """Where a micro-batch's per-response-token outputs come from and go to; host tensors until :meth:`to`.

    Attributes:
        inputs: model inputs: ``input_ids``/``position_ids`` ``(1, N)`` packed or ``(B, T)`` padded (plus
            ``attention_mask``), and the packed boundaries as forward keyword arguments.
        keep: ``(K,)`` positions of the model's outputs that predict response tokens (in ``logits_to_keep``
            coordinates: the packed row, or the flattened ``(B, R)`` block of the last ``R + 1`` positions).
        targets: ``(K,)`` the response token each kept position predicts.
        out_index: ``(K,)`` where each output goes in the flattened ``(B, R)`` result.
        shape: ``(B, R)``.
        packed: packed or padded forward.
        sp: with Ulysses sequence parallelism, how the kept outputs are spread over the group (``inputs``,
            ``keep`` and ``targets`` are then this rank's slice; see :mod:`verl.workers.parallel.ulysses`).
    """

    inputs: dict
    keep: torch.Tensor
    targets: torch.Tensor
    out_index: torch.Tensor
    shape: tuple[int, int]
    packed: bool
    sp: Any = None

    def tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"in.{k}": v for k, v in self.inputs.items() if isinstance(v, torch.Tensor)}
        tensors.update(keep=self.keep, targets=self.targets, out_index=self.out_index)
        return tensors

    def with_tensors(self, moved: dict[str, torch.Tensor]) -> ResponseLayout:
        """The same layout with its tensors replaced by ``moved`` (e.g. after one host-to-device transfer)."""
        inputs = {k: moved.get(f"in.{k}", v) for k, v in self.inputs.items()}
        return ResponseLayout(inputs, moved["keep"], moved["targets"], moved["out_index"], self.shape, self.packed,
                              self.sp)


def response_layout(batch: dict[str, torch.Tensor], response_length: int, packed: bool,
                    device: torch.device = torch.device("cpu"), sp: Any = None) -> ResponseLayout:
    """The layout of a ``prompts + responses`` micro-batch (``input_ids``, ``attention_mask``, ``position_ids``:
    ``(B, T)``, the last ``R`` columns the right-padded responses), computed on the batch's (host) device for a
    forward on ``device`` (which picks the packed attention kernel, hence what it needs). ``sp``: this rank's
    :class:`~verl.workers.parallel.ulysses.UlyssesGroup` (size > 1: a packed forward over this rank's slice)."""
    input_ids, attention_mask, position_ids = (batch[k] for k in MODEL_INPUTS)
    B, T = attention_mask.shape
    R = response_length
    valid = attention_mask.bool()
    keep = torch.zeros_like(valid)
    keep[:, :-1] = valid[:, :-1] & valid[:, 1:]  # position t is valid and predicts a valid token t+1 ...
    keep[:, : T - 1 - R] = False  # ... that lies in the response region
    out_mask = keep[:, -R - 1 : -1]  # (B, R): which response tokens get an output
    out_index = out_mask.reshape(-1).nonzero().squeeze(-1)  # (K,)
    targets = input_ids[:, -R:].reshape(-1)[out_index]  # (K,)
    if packed:
        lengths = valid.sum(-1)
        inputs = {"input_ids": input_ids[valid].unsqueeze(0), "position_ids": position_ids[valid].unsqueeze(0),  # (1, N)
                  **packed_forward_kwargs(lengths.tolist(), device)}
        kept = keep[valid].nonzero().squeeze(-1)  # (K,) positions in the packed row
        if sp is not None and sp.size > 1:
            from verl.workers.parallel.ulysses import shard_packed_inputs

            inputs, kept, targets, shard = shard_packed_inputs(inputs, lengths.tolist(), kept, targets, sp, device)
            return ResponseLayout(inputs, kept, targets, out_index, (B, R), packed, shard)
    elif sp is not None and sp.size > 1:
        raise ValueError("Ulysses sequence parallelism needs packed forwards: set model.use_remove_padding=true")
    else:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        kept = out_index  # the model keeps the last R + 1 positions; their first R, flattened, are (B, R)
    return ResponseLayout(inputs, kept, targets, out_index, (B, R), packed)


@functools.cache
def _takes_logits_to_keep(model_cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


def _kept_outputs(model: nn.Module, layout: ResponseLayout) -> torch.Tensor:
    """``(K, C)`` model outputs (logits, or values with ``C = 1``) at the layout's kept positions."""
    takes_keep = _takes_logits_to_keep(type(model))
    if layout.packed:
        kwargs = {"logits_to_keep": layout.keep} if takes_keep else {}
        out = model(**layout.inputs, use_cache=False, **kwargs).logits[0]  # (K, C), or (N, C)
        return out if takes_keep else out.index_select(0, layout.keep)
    B, R = layout.shape
    kwargs = {"logits_to_keep": R + 1} if takes_keep else {}
    out = model(**layout.inputs, use_cache=False, **kwargs).logits[:, -R - 1 : -1]  # (B, R, C)
    return out.reshape(B * R, -1).index_select(0, layout.keep)


def _scatter(values: torch.Tensor, layout: ResponseLayout) -> torch.Tensor:
    """``(K,)`` per-kept-position values into a ``(B, R)`` float32 tensor, 0 elsewhere (differentiable)."""
    B, R = layout.shape
    flat = torch.zeros(B * R, dtype=torch.float32, device=values.device)
    return flat.index_copy(0, layout.out_index, values.float()).view(B, R)


class _LogSoftmaxPick(torch.autograd.Function):
    """``log softmax(logits / T)[target]`` and optionally the entropy of ``softmax(logits / T)``, per row.

    Forward works in float32 one chunk of rows at a time; only ``logits`` (in its own dtype) and two float32
    numbers per row are kept for backward, which recomputes each chunk's softmax. Gradients, with
    ``z = logits / T`` and ``p = softmax(z)``: ``d logp_t / dz = onehot(t) - p`` and
    ``d H / dz = -p * (z - E_p[z])``.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool, rows: int):
        N, V = logits.shape
        log_probs = torch.empty(N, dtype=torch.float32, device=logits.device)
        lse = torch.empty(N, dtype=torch.float32, device=logits.device)
        mean_z = torch.empty(N, dtype=torch.float32, device=logits.device) if with_entropy else None
        for lo in range(0, N, rows):
            z = logits[lo : lo + rows].float() / temperature  # (n, V)
            block_lse = torch.logsumexp(z, dim=-1)
            lse[lo : lo + rows] = block_lse
            log_probs[lo : lo + rows] = z.gather(-1, targets[lo : lo + rows, None]).squeeze(-1) - block_lse
            if with_entropy:
                mean_z[lo : lo + rows] = (torch.softmax(z, dim=-1) * z).sum(-1)
        entropy = lse - mean_z if with_entropy else None
        ctx.save_for_backward(logits, targets, lse, mean_z if with_entropy else lse)
        ctx.temperature, ctx.rows, ctx.with_entropy = temperature, rows, with_entropy
        return log_probs, entropy

    @staticmethod
    def backward(ctx, grad_log_probs, grad_entropy):
        logits, targets, lse, mean_z = ctx.saved_tensors
        T = ctx.temperature
        grad = torch.empty_like(logits)
        use_entropy = ctx.with_entropy and grad_entropy is not None
        for lo in range(0, logits.shape[0], ctx.rows):
            sl = slice(lo, lo + ctx.rows)
            z = logits[sl].float() / T  # (n, V)
            p = torch.exp(z - lse[sl, None])
            g = torch.zeros_like(z)
            if grad_log_probs is not None:
                g_lp = grad_log_probs[sl, None]
                g -= g_lp * p
                g.scatter_add_(-1, targets[sl, None], g_lp)
            if use_entropy:
                g -= grad_entropy[sl, None] * p * (z - mean_z[sl, None])
            grad[sl] = g / T
        return grad, None, None, None, None


def log_probs_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, with_entropy: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(N,)`` float32 ``log softmax(logits / temperature)[targets]`` and (optionally) ``(N,)`` entropies.

    Args:
        logits: ``(N, V)`` any float dtype. targets: ``(N,)`` token ids.
        chunk_size: rows per float32 chunk; default: as many as fit in 128 MiB.
    """
    rows = chunk_size or max(1, _CHUNK_ELEMENTS // max(logits.shape[-1], 1))
    return _LogSoftmaxPick.apply(logits, targets, float(temperature), with_entropy, rows)


def log_probs_from_logits(logits: torch.Tensor, targets: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """``(N,)`` float32 ``log softmax(logits)[targets]`` for ``(N, V)`` logits, without an fp32 copy kept."""
    return log_probs_and_entropy(logits, targets, chunk_size=chunk_size)[0]


def response_logits(
    model: nn.Module,
    batch: dict[str, torch.Tensor] | ResponseLayout,
    response_length: int,
    temperature: float,
    packed: bool,
    calculate_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the response tokens under ``softmax(logits / temperature)``.

    Args:
        batch: ``input_ids``, ``attention_mask``, ``position_ids``: ``(B, T)`` with the last ``R`` columns the
            right-padded responses; or a :class:`ResponseLayout` already on the model's device.
    Returns:
        ``log_probs``: ``(B, R)`` float32, 0 on padding; ``entropy``: ``(B, R)`` or None.
    """
    layout = batch if isinstance(batch, ResponseLayout) else _on_model_device(model, batch, response_length, packed)
    logits = _kept_outputs(model, layout)  # (K, V); with sequence parallelism this rank's (K_rank, V)
    log_probs, entropy = log_probs_and_entropy(logits, layout.targets, temperature, calculate_entropy)
    log_probs, entropy = _gather_sp(log_probs, layout), _gather_sp(entropy, layout)  # (K,)
    return _scatter(log_probs, layout), (_scatter(entropy, layout) if calculate_entropy else None)


def response_values(model: nn.Module, batch: dict[str, torch.Tensor] | ResponseLayout, response_length: int,
                    packed: bool) -> torch.Tensor:
    """``(B, R)`` float32 value estimates V(s_t) for the state before each response token (0 on padding)."""
    layout = batch if isinstance(batch, ResponseLayout) else _on_model_device(model, batch, response_length, packed)
    return _scatter(_gather_sp(_kept_outputs(model, layout).squeeze(-1), layout), layout)


def _gather_sp(values: torch.Tensor | None, layout: ResponseLayout) -> torch.Tensor | None:
    """The whole row's ``(K,)`` outputs from this rank's share under sequence parallelism (else ``values``)."""
    if layout.sp is None or values is None:
        return values
    from verl.workers.parallel.ulysses import gather_kept

    return gather_kept(values, layout.sp)


def _on_model_device(model: nn.Module, batch: dict[str, torch.Tensor], response_length: int,
                     packed: bool) -> ResponseLayout:
    from verl.workers.batching import to_device

    host = {k: batch[k].cpu() for k in MODEL_INPUTS}
    device = next(model.parameters()).device
    layout = response_layout(host, response_length, packed, device)
    return layout.with_tensors(to_device(layout.tensors(), device))
