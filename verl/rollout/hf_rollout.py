"""The ``hf`` rollout backend: ``transformers.generate`` on any causal LM; the correctness reference."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch

from verl.models.weights import strip_wrappers
from verl.rollout.base import BaseRollout, Generated, GenerationRequest, Prompts, special_tokens
from verl.rollout.config import RolloutConfig
from verl.utils.device import empty_cache

__all__ = ["HFRollout"]


class HFRollout(BaseRollout):
    """Generate with ``model.generate`` in chunks of ``max_num_seqs`` rows.

    Sampling follows the call's settings (``top_k=-1`` maps to HF's ``top_k=0``, i.e. off); ``ignore_eos`` gives
    generate no EOS id at all, so EOS is neither a stop nor suppressed. Log-probs come from the raw logits
    (``log_softmax(logits / T)``), the same convention as the native engine.

    Args:
        config: the rollout config section.
        model: a transformers causal LM (used as is: shared with the caller, e.g. the actor).
        tokenizer: optional, for the default EOS / pad ids.
    """

    def __init__(self, config: RolloutConfig, model: torch.nn.Module, tokenizer: Any = None):
        self.config = config.validate()
        self.model = model
        self.default_eos, self.default_pad = special_tokens(
            tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)
        )
        self._calls = 0
        self._offloaded_from: torch.device | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generate(self, prompts: Prompts, request: GenerationRequest) -> Generated:
        if self._offloaded_from is not None:
            self.wake_up()
        chunk = self.config.max_num_seqs
        parts = []
        seed = request.seed if request.seed is not None else self.config.seed + self._calls
        self._calls += 1
        devices = [self.device] if self.device.type != "cpu" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, prompts.input_ids.shape[0], chunk):
                rows = slice(start, start + chunk)
                parts.append(self._generate_chunk(prompts.input_ids[rows], prompts.attention_mask[rows], request))
        return Generated(
            responses=torch.cat([p.responses for p in parts]),
            lengths=torch.cat([p.lengths for p in parts]),
            log_probs=torch.cat([p.log_probs for p in parts]) if request.calculate_log_probs else None,
        )

    def _generate_chunk(self, input_ids: torch.Tensor, mask: torch.Tensor, request: GenerationRequest) -> Generated:
        from transformers import GenerationConfig

        s = request.sampling
        knobs = {} if s.greedy else {"temperature": s.temperature, "top_k": max(s.top_k, 0), "top_p": s.top_p}
        # transformers 5 fills every knob left unset here from the checkpoint's generation_config.json (Qwen2.5's
        # sets repetition_penalty 1.05, top_k 20, ...): the neutral values are spelled out so only the call's
        # settings apply.
        neutral = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0, "typical_p": 1.0,
                   "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "encoder_repetition_penalty": 1.0, "num_beams": 1}
        gen_config = GenerationConfig(
            **neutral,
            max_new_tokens=request.response_length,
            do_sample=not s.greedy,
            eos_token_id=[] if request.ignore_eos else list(request.eos_token_ids),
            pad_token_id=request.pad_token_id,
            return_dict_in_generate=True,
            output_logits=request.calculate_log_probs,
            **knobs,
        )
        device = self.device
        out = self.model.generate(
            input_ids=input_ids.to(device), attention_mask=mask.to(device), generation_config=gen_config,
        )
        new = out.sequences[:, input_ids.shape[1]:]  # (B, r), r <= R
        b, r = new.shape
        if request.ignore_eos:
            lengths = torch.full((b,), r, dtype=torch.long, device=new.device)
        else:
            is_eos = torch.isin(new, torch.tensor(request.eos_token_ids, device=new.device))  # (B, r)
            first_eos = is_eos.long().argmax(-1)  # index of the first EOS (0 when there is none)
            lengths = torch.where(is_eos.any(-1), first_eos + 1, r)
        responses = torch.full((b, request.response_length), request.pad_token_id, dtype=torch.long,
                               device=new.device)
        cols = torch.arange(r, device=new.device)
        responses[:, :r] = torch.where(cols[None, :] < lengths[:, None], new, request.pad_token_id)
        log_probs = None
        if request.calculate_log_probs:
            logits = torch.stack(out.logits, dim=1).float() / s.logprob_temperature  # (B, r, V)
            chosen = torch.log_softmax(logits, dim=-1).gather(-1, new[..., None]).squeeze(-1)  # (B, r)
            log_probs = torch.zeros((b, request.response_length), dtype=torch.float32, device=new.device)
            log_probs[:, :r] = torch.where(cols[None, :] < lengths[:, None], chosen, 0.0)
        return Generated(responses=responses, lengths=lengths, log_probs=log_probs)

    # ------------------------------------------------------------------ hybrid-engine hooks

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy tensors into the model's parameters/buffers by HF name (same storage: skipped)."""
        targets = dict(self.model.named_parameters())
        targets.update(dict(self.model.named_buffers()))
        with torch.no_grad():
            for name, tensor in named_tensors:
                name = strip_wrappers(name)
                if name not in targets:
                    close = difflib.get_close_matches(name, list(targets), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise KeyError(f"{name!r} is not a parameter of the rollout model{hint}")
                if hasattr(tensor, "full_tensor"):
                    tensor = tensor.full_tensor()
                dst = targets[name]
                if dst.data_ptr() != tensor.data_ptr():
                    dst.copy_(tensor)

    def sleep(self, level: int = 1) -> None:
        """transformers frees its KV cache after each call; level 2 moves the model to the CPU."""
        if level not in (1, 2):
            raise ValueError(f"sleep level must be 1 (KV cache) or 2 (KV cache and weights), got {level}")
        if level == 2 and self.device.type != "cpu":
            self._offloaded_from = self.device
            self.model.to("cpu")
        empty_cache()

    def wake_up(self) -> None:
        if self._offloaded_from is not None:
            self.model.to(self._offloaded_from)
            self._offloaded_from = None
