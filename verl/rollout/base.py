"""The rollout interface every backend implements, and the input/output contract they share.

``generate_sequences(DataProto) -> DataProto`` (verl's contract):

- in: ``input_ids`` / ``attention_mask`` / ``position_ids`` ``(B, P)``, prompts LEFT-padded; ``meta_info`` may
  override ``do_sample, temperature, top_k, top_p, response_length, eos_token_id (int or list), pad_token_id,
  calculate_log_probs, ignore_eos`` and set ``validate=True`` to sample with ``val_kwargs``;
- out: ``prompts (B, P)`` as given, ``responses (B, R)`` right-padded with the pad id to exactly ``R =
  response_length`` columns, ``input_ids = cat(prompts, responses)``, ``attention_mask = cat(prompt mask,
  response_mask)``, ``position_ids`` continuing from each prompt's last position, ``response_mask`` (1 up to
  and including EOS), ``rollout_log_probs (B, R)`` (0 on padding) when log-probs are asked for; the input's
  ``non_tensor_batch`` and ``meta_info`` are kept.

One response per input row: the trainer repeats prompts ``n`` times before calling (``batch.repeat(n)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from verl.protocol import DataProto
from verl.rollout.config import RolloutConfig
from verl.rollout.sampling import SamplingParams

__all__ = ["BaseRollout", "GenerationRequest", "Generated", "Prompts", "parse_prompts", "resolve_request"]


@dataclass(frozen=True)
class GenerationRequest:
    """The resolved settings of one ``generate_sequences`` call (config, then ``meta_info`` overrides)."""

    sampling: SamplingParams
    response_length: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    ignore_eos: bool
    calculate_log_probs: bool
    seed: int | None = None
    """``meta_info['seed']``: the sampling stream of this call (None = ``config.seed`` + a call counter)."""


@dataclass
class Prompts:
    """Left-padded prompts and what the engines need from them. All tensors ``(B, P)`` unless noted."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    lengths: torch.Tensor
    """``(B,)`` number of real (unpadded) tokens per prompt."""


@dataclass
class Generated:
    """What a backend produced: ``responses (B, R)`` padded with the pad id, ``lengths (B,)`` real tokens
    (EOS included), ``log_probs (B, R)`` float32 with 0 after ``lengths`` (or ``None``)."""

    responses: torch.Tensor
    lengths: torch.Tensor
    log_probs: torch.Tensor | None = None


def _as_id_tuple(value: Any) -> tuple[int, ...]:
    """Token id(s) given as an int, a list/tuple, a numpy array or a tensor -> a tuple of ints."""
    if value is None:
        return ()
    if hasattr(value, "tolist"):  # tensors, numpy arrays and numpy scalars
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


def resolve_request(
    meta_info: Mapping[str, Any],
    config: RolloutConfig,
    default_eos: Sequence[int],
    default_pad: int | None,
) -> GenerationRequest:
    """Merge the config, ``val_kwargs`` (when ``meta_info['validate']``) and ``meta_info`` overrides.

    Raises ``ValueError`` naming the key for an impossible value (negative temperature, no EOS/pad id, ...).
    """
    base = config.val_kwargs if meta_info.get("validate", False) else config
    knobs = {k: meta_info.get(k, getattr(base, k)) for k in ("do_sample", "temperature", "top_k", "top_p")}
    sampling = SamplingParams(
        do_sample=bool(knobs["do_sample"]), temperature=float(knobs["temperature"]),
        top_k=int(knobs["top_k"]), top_p=float(knobs["top_p"]),
    )
    if sampling.temperature < 0:
        raise ValueError(f"meta_info temperature={sampling.temperature} must be >= 0 (0 = greedy)")
    if sampling.top_k == 0 or sampling.top_k < -1 or not 0.0 < sampling.top_p <= 1.0:
        raise ValueError(f"meta_info top_k={sampling.top_k} / top_p={sampling.top_p}: use top_k -1 or >= 1, "
                         "top_p in (0, 1]")
    response_length = int(meta_info.get("response_length", config.response_length))
    if response_length < 1:
        raise ValueError(f"response_length={response_length} must be >= 1")
    eos = _as_id_tuple(meta_info["eos_token_id"]) if "eos_token_id" in meta_info else tuple(default_eos)
    pad = meta_info.get("pad_token_id", default_pad)
    if pad is None:
        pad = eos[0] if eos else None
    if pad is None:
        raise ValueError("no pad token id: pass meta_info['pad_token_id'] or a tokenizer with a pad/eos token")
    ignore_eos = bool(meta_info.get("ignore_eos", config.ignore_eos))
    if not eos and not ignore_eos:
        raise ValueError("no EOS token id: pass meta_info['eos_token_id'], a tokenizer, or set ignore_eos=true")
    return GenerationRequest(
        sampling=sampling, response_length=response_length, eos_token_ids=eos, pad_token_id=int(pad),
        ignore_eos=ignore_eos,
        calculate_log_probs=bool(meta_info.get("calculate_log_probs", config.calculate_log_probs)),
        seed=int(meta_info["seed"]) if meta_info.get("seed") is not None else None,
    )


def parse_prompts(data: DataProto) -> Prompts:
    """Check and unpack the prompt tensors of a generation request (``position_ids`` derived when missing)."""
    for key in ("input_ids", "attention_mask"):
        if key not in data.batch:
            raise KeyError(f"generate_sequences needs batch[{key!r}] (left-padded prompts); got {list(data.batch.keys())}")
    input_ids, mask = data.batch["input_ids"], data.batch["attention_mask"]
    if input_ids.dim() != 2 or mask.shape != input_ids.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(mask.shape)} must both be "
                         "(batch, prompt_length)")
    valid = mask.bool()
    lengths = valid.sum(-1)
    if bool((lengths == 0).any()):
        raise ValueError(f"prompt rows {torch.nonzero(lengths == 0).flatten().tolist()} are empty (all padding)")
    if bool((valid[:, :-1] & ~valid[:, 1:]).any()):
        raise ValueError("prompts must be LEFT-padded (attention_mask 0...0 1...1 per row); right-padded or holed "
                         "prompts would generate after padding")
    position_ids = data.batch["position_ids"] if "position_ids" in data.batch else None
    if position_ids is None:
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    elif position_ids.shape != input_ids.shape:
        raise ValueError(f"position_ids {tuple(position_ids.shape)} must match input_ids {tuple(input_ids.shape)} "
                         "(multi-axis rope position ids are not supported)")
    return Prompts(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, lengths=lengths)


def build_output(data: DataProto, prompts: Prompts, gen: Generated, request: GenerationRequest) -> DataProto:
    """Assemble the output DataProto of the contract above from a backend's :class:`Generated`."""
    device = prompts.input_ids.device
    responses = gen.responses.to(device=device, dtype=prompts.input_ids.dtype)
    r = request.response_length
    cols = torch.arange(r, device=device)
    response_mask = (cols[None, :] < gen.lengths.to(device)[:, None]).to(prompts.attention_mask.dtype)  # (B, R)
    last_pos = prompts.position_ids[:, -1:]  # left padding: the last column is the last real token
    tensors = {
        "prompts": prompts.input_ids,
        "responses": responses,
        "input_ids": torch.cat([prompts.input_ids, responses], dim=-1),
        "attention_mask": torch.cat([prompts.attention_mask, response_mask], dim=-1),
        "position_ids": torch.cat([prompts.position_ids, last_pos + 1 + cols[None, :]], dim=-1),
        "response_mask": response_mask,
    }
    if request.calculate_log_probs:
        if gen.log_probs is None:
            raise RuntimeError("backend returned no log-probs although calculate_log_probs is set")
        tensors["rollout_log_probs"] = gen.log_probs.to(device=device, dtype=torch.float32) * response_mask
    out = DataProto.from_dict(tensors, meta_info=dict(data.meta_info))
    out.non_tensor_batch = dict(data.non_tensor_batch)
    out.check_consistency()
    return out


class BaseRollout(ABC):
    """A generation backend: ``generate_sequences``, plus the hybrid-engine hooks ``update_weights``,
    ``sleep`` and ``wake_up``."""

    config: RolloutConfig
    default_eos: tuple[int, ...] = ()
    default_pad: int | None = None
    needs_weights: bool = False
    """True while the engine holds no real weights (vLLM ``load_format=dummy``, or after ``sleep(2)`` on a GPU):
    the hybrid worker then pushes the actor's weights before generating, changed or not."""

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Generate one response per prompt row (see the module docstring for the contract)."""
        parsed = parse_prompts(prompts)
        request = resolve_request(prompts.meta_info, self.config, self.default_eos, self.default_pad)
        generated = self._generate(parsed, request)
        return build_output(prompts, parsed, generated, request)

    @abstractmethod
    def _generate(self, prompts: Prompts, request: GenerationRequest) -> Generated:
        """Backend-specific generation."""

    @abstractmethod
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Take new weights by HF name (``model.layers.0.self_attn.q_proj.weight``, ...); a tied ``lm_head``
        may be absent."""

    @abstractmethod
    def sleep(self, level: int = 1) -> None:
        """Free generation memory: level 1 the KV cache, level 2 also the weights this rollout owns."""

    @abstractmethod
    def wake_up(self) -> None:
        """Undo :meth:`sleep` (weights back on the device; the KV cache is allocated at the next generation)."""


def special_tokens(tokenizer: Any, *sources: Any) -> tuple[tuple[int, ...], int | None]:
    """EOS ids and pad id: from the tokenizer when given, else from the first source (generation config, model
    config) that defines them."""
    eos: tuple[int, ...] = ()
    pad = None
    if tokenizer is not None:
        eos = _as_id_tuple(getattr(tokenizer, "eos_token_id", None))
        pad = getattr(tokenizer, "pad_token_id", None)
    for src in sources:
        if src is None:
            continue
        eos = eos or _as_id_tuple(getattr(src, "eos_token_id", None))
        pad = pad if pad is not None else getattr(src, "pad_token_id", None)
    return eos, pad
