"""Token sampling on the device: temperature, top-k, top-p (nucleus), greedy; plus the sampled token's log-prob.

Pure tensor functions, no host synchronisation: they can run between CUDA-graph replays without stalling the
device. Sampling uses the Gumbel-max trick (``argmax(logit_i + G_i)`` with standard Gumbel noise ``G_i`` draws
token ``i`` with probability ``softmax(logits)_i``), which needs no softmax, no sort and no ``multinomial``;
the random numbers are drawn first (with the caller's seeded generator) and the rest is one pure function,
:func:`pick_tokens`, that ``torch.compile`` fuses into a couple of passes over the ``(B, V)`` logits.

Log-prob convention (shared by every backend): the log-probability of the chosen token under
``log_softmax(logits / temperature)`` *before* top-k/top-p filtering, with temperature 1 for greedy decoding.
That is what the actor recomputes as ``old_log_probs``, so the two can be compared token by token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SamplingParams", "filter_logits", "pick_tokens", "sample_tokens"]


@dataclass(frozen=True)
class SamplingParams:
    """The sampling settings of one generation call (the same for every sequence of the call)."""

    do_sample: bool = True
    """Sample when True; take the argmax (greedy) when False."""
    temperature: float = 1.0
    """Divides the logits before softmax; only used when sampling (must then be > 0)."""
    top_k: int = -1
    """Keep the ``top_k`` largest logits (ties at the boundary kept); ``-1`` = off."""
    top_p: float = 1.0
    """Keep the smallest most-likely set with probability mass >= ``top_p``; 1.0 = off."""

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0.0

    @property
    def logprob_temperature(self) -> float:
        return 1.0 if self.greedy else self.temperature


def filter_logits(logits: torch.Tensor, top_k: int = -1, top_p: float = 1.0) -> torch.Tensor:
    """Set every logit outside the top-k / top-p set to ``-inf``.

    Args:
        logits: ``(B, V)`` float logits, already divided by the temperature.
        top_k: keep logits ``>=`` the k-th largest per row; ``-1`` (or ``>= V``) keeps all.
        top_p: keep the smallest set of most likely tokens whose softmax mass reaches ``top_p`` (the most likely
            token is always kept); 1.0 keeps all. Applied after top-k, within the top-k set (as vLLM does).

    Returns:
        ``(B, V)`` logits with the dropped entries at ``-inf``.

    Reference: Holtzman et al., "The Curious Case of Neural Text Degeneration" (2019) for nucleus sampling.
    """
    vocab = logits.shape[-1]
    use_k = 0 < top_k < vocab
    if not use_k and top_p >= 1.0:
        return logits
    if use_k:
        # sorting only the top-k keeps top-p cheap on large vocabularies
        values, indices = torch.topk(logits, top_k, dim=-1)  # (B, k), descending
    else:
        values, indices = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    keep = torch.ones_like(values, dtype=torch.bool)
    if top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # (B, k) mass of strictly more likely tokens
        keep = mass_before < top_p
        keep[:, 0] = True
    if use_k:
        # a threshold (not the topk indices) so ties with the boundary value are kept whatever topk's tie order
        threshold = torch.where(keep, values, torch.full_like(values, float("inf"))).amin(-1, keepdim=True)
        return logits.masked_fill(logits < threshold, float("-inf"))
    filtered = torch.full_like(logits, float("-inf"))
    return filtered.scatter(-1, indices, values.masked_fill(~keep, float("-inf")))


def pick_tokens(
    logits: torch.Tensor, uniform: torch.Tensor | None, params: SamplingParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic part of sampling, given the random numbers: fusable by ``torch.compile``.

    Args:
        logits: ``(B, V)`` raw model logits (any float dtype; computed in float32).
        uniform: ``(B, V)`` float32 draws from ``U[0, 1)`` (``None`` for greedy).
        params: the call's sampling settings.

    Returns:
        ``tokens (B,)`` int64 and ``log_probs (B,)`` float32 (see :func:`sample_tokens`).

    Sampling is Gumbel-max: ``argmax(filtered_logits - log(-log U))`` draws token ``i`` with probability
    ``softmax(filtered_logits)_i`` (Gumbel 1954; the "Gumbel-max trick"), needing no softmax, sort or multinomial.
    """
    logits = logits.float()
    if params.greedy:
        scaled = logits
        tokens = logits.argmax(dim=-1)  # (B,)
    else:
        scaled = logits / params.temperature
        filtered = filter_logits(scaled, params.top_k, params.top_p)  # (B, V), -inf outside the allowed set
        gumbel = -torch.log(-torch.log(uniform))  # U = 0 gives -inf: that token is simply never picked
        tokens = (filtered + gumbel).argmax(dim=-1)
    chosen = scaled.gather(-1, tokens[:, None]).squeeze(-1)  # (B,)
    return tokens, chosen - torch.logsumexp(scaled, dim=-1)


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None, pick=pick_tokens
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row and return it with its log-probability.

    Args:
        logits: ``(B, V)`` raw model logits (any float dtype; computed in float32).
        params: the call's sampling settings.
        generator: random stream on ``logits.device`` (seeded by the caller for reproducibility).
        pick: :func:`pick_tokens` or a compiled version of it.

    Returns:
        ``tokens`` ``(B,)`` int64 and ``log_probs`` ``(B,)`` float32: ``log_softmax(logits / T)[token]`` with
        ``T = params.logprob_temperature`` (unfiltered distribution; see the module docstring).
    """
    uniform = None
    if not params.greedy:
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device)  # (B, V) U[0, 1)
    return pick(logits, uniform, params)
