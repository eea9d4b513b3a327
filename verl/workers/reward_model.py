"""``RewardModelWorker``: scores responses with a learned reward model, one scalar per sequence.

The reward model is a transformers token-classification model with one label; a sequence's score is its
output at the sequence's last valid token, and it is placed on the last valid *response* token of
``rm_scores`` (where the trainer expects outcome rewards). When the reward model's tokenizer differs from
the policy's (``reward_model.model.input_tokenizer`` set), the prompt messages (``raw_prompt``, from
``data.return_raw_chat=True``) plus the decoded response are re-templated with the reward model's chat template
first; ``reward_model.max_length`` then truncates on the left, so the response's end, where the score is read,
is always kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from verl.protocol import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, register
from verl.utils.config import from_mapping
from verl.workers.batching import BatchPlan, split_micro_batches
from verl.workers.config import RewardModelConfig
from verl.workers.fsdp import build_sharded_model

__all__ = ["RewardModelWorker", "last_token_index", "last_token_scores"]


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index of the last 1 in each row of ``attention_mask`` ``(B, T)`` (rows may be left- and right-padded)."""
    T = attention_mask.shape[-1]
    return T - 1 - attention_mask.flip(-1).long().argmax(-1)


def last_token_scores(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the output at each row's last valid token (rows may be left- and right-padded).

    Args: logits ``(B, T)``; attention_mask ``(B, T)``.
    """
    return logits.gather(-1, last_token_index(attention_mask)[:, None]).squeeze(-1)


class RewardModelWorker(Worker):
    """Args: config: the ``reward_model`` section (typed or a mapping)."""

    def __init__(self, config: RewardModelConfig | Mapping[str, Any]):
        super().__init__()
        self.init_process_group()  # as verl's workers: the model workers join the world, the base class does not
        self.config = (config if isinstance(config, RewardModelConfig)
                       else from_mapping(RewardModelConfig, config, "reward_model."))

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self) -> None:
        from verl.workers.fsdp_workers import load_tokenizer

        mc = self.config.model
        self.input_tokenizer = load_tokenizer(mc.input_tokenizer, mc.trust_remote_code) if mc.input_tokenizer else None
        self.tokenizer = load_tokenizer(mc.path, mc.trust_remote_code) if self.input_tokenizer is not None else None
        if self.tokenizer is not None:
            self.tokenizer.truncation_side = "left"  # keep the response's end: the score is read there
        self.module = build_sharded_model(mc, "value", mc.fsdp_config, self.world_size, self.device, train=False)

    def _retemplate(self, data: DataProto) -> DataProto:
        """Render each prompt's messages plus its decoded response with the reward model's chat template and
        tokenize that for the reward model (the policy's ids mean nothing to a different vocabulary)."""
        src, dst = self.input_tokenizer, self.tokenizer
        raw = data.non_tensor_batch.get("raw_prompt")
        if raw is None:
            raise ValueError(
                "reward_model.model.input_tokenizer is set, so responses are re-templated for the reward model, "
                "which needs each prompt's messages: set data.return_raw_chat=True (the batch has no 'raw_prompt')"
            )
        response_mask = data.batch["attention_mask"][:, -data.batch["responses"].shape[-1]:].bool()
        texts = []
        for i in range(len(data)):
            response_ids = data.batch["responses"][i][response_mask[i]]
            chat = [dict(m) for m in raw[i]]
            chat.append({"role": "assistant", "content": src.decode(response_ids, skip_special_tokens=True)})
            texts.append(dst.apply_chat_template(chat, tokenize=False))
        enc = dst(texts, return_tensors="pt", padding=True, truncation=self.config.max_length is not None,
                  max_length=self.config.max_length, add_special_tokens=False)
        mask = enc["attention_mask"]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return DataProto.from_dict({"input_ids": enc["input_ids"], "attention_mask": mask, "position_ids": position_ids})

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(b,)`` float32 score of each row: the model's output at the row's last valid token.

        Packed (``use_remove_padding``): the valid tokens of all rows form one ``(1, N)`` row whose position ids
        restart at 0 per sequence, so attention stays within each sequence and padding costs nothing.
        """
        mask = batch["attention_mask"]
        if not self.config.model.use_remove_padding:
            logits = self.module(**batch, use_cache=False).logits.squeeze(-1).float()  # (b, T)
            return last_token_scores(logits, mask)
        valid = mask.bool()
        ids = batch["input_ids"][valid].unsqueeze(0)  # (1, N)
        pos = batch["position_ids"][valid].unsqueeze(0)  # (1, N)
        out = self.module(input_ids=ids, position_ids=pos, use_cache=False).logits[0, :, 0].float()  # (N,)
        ends = mask.sum(-1).cumsum(0) - 1  # (b,) flat index of each row's last valid token
        return out[ends]

    @torch.no_grad()
    def _score(self, data: DataProto) -> torch.Tensor:
        plan = BatchPlan.for_forward(self.config.micro_batch_size_per_gpu, self.config.use_dynamic_bsz,
                                     self.config.forward_max_token_len_per_gpu)
        micro_batches, restore = split_micro_batches(data, plan)
        scores = []
        for mb in micro_batches:
            inputs = {k: mb.batch[k].to(self.device) for k in ("input_ids", "attention_mask", "position_ids")}
            scores.append(self._forward(inputs))
        scores = torch.cat(scores).cpu()
        return scores[restore] if restore is not None else scores

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def compute_rm_score(self, data: DataProto) -> DataProto:
        """``rm_scores`` ``(B, R)``: each sequence's score on its last valid response token, 0 elsewhere."""
        inputs = self._retemplate(data) if self.input_tokenizer is not None else data
        scores = self._score(inputs)
        R = data.batch["responses"].shape[-1]
        response_mask = data.batch["attention_mask"][:, -R:]
        last = (response_mask.sum(-1) - 1).clamp(min=0)
        rm_scores = torch.zeros(len(data), R, dtype=torch.float32)
        rm_scores[torch.arange(len(data)), last] = scores
        return DataProto.from_dict({"rm_scores": rm_scores})
