"""One generation call of the native engine: continuous batching over the KV-cache slots.

The loop, in prose::

    while sequences are waiting or running:
        fill free slots: prefill the next prompts (identical prompts once), sample each slot's first token
        decode step for the first B slots (B = a captured bucket >= the highest occupied slot)
        sample on the device; append token and log-prob; mark EOS / length finishes on the device
        every `finished_check_interval` steps (or when a slot must have hit the length): one device->host sync
        to release finished slots, copy their outputs out, refill them, and compact when nothing waits

All per-slot state (last token, position, cache index, tokens generated, done flag, outputs) stays on the
device, so the host only synchronises at those checks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from verl.rollout.base import Generated, GenerationRequest, Prompts
from verl.rollout.native.runner import ModelRunner
from verl.rollout.native.scheduler import PrefillPlan, SlotPool, plan_prefill

__all__ = ["GenerationRun", "RunOptions"]


@dataclass(frozen=True)
class RunOptions:
    """Engine knobs of one call (from :class:`~verl.rollout.config.RolloutConfig`)."""

    max_batched_tokens: int
    share_prefix: bool
    check_interval: int
    show_progress: bool


class GenerationRun:
    """Generate ``request.response_length`` tokens (or until EOS) for every prompt row, using ``runner``'s slots."""

    def __init__(self, runner: ModelRunner, prompts: Prompts, request: GenerationRequest, options: RunOptions,
                 generator: torch.Generator):
        self.runner, self.request, self.options, self.generator = runner, request, options, generator
        cache = runner.cache
        assert cache is not None
        self.device = runner.device
        n, r = prompts.input_ids.shape[0], request.response_length
        ids, pos = prompts.input_ids.cpu(), prompts.position_ids.cpu()
        lengths = prompts.lengths.cpu().tolist()
        width = ids.shape[1]
        # each prompt without its left padding, and its RoPE positions
        self.prompt_ids = [ids[i, width - lengths[i]:] for i in range(n)]
        self.prompt_pos = [pos[i, width - lengths[i]:] for i in range(n)]
        self.keys = [tuple(p.tolist()) for p in self.prompt_ids]
        self.queue = deque(range(n))
        self.pool = SlotPool(cache.num_slots)
        self.slot_start_step = [0] * cache.num_slots  # host mirror: the step a slot's sequence started at
        self.step_count = 0
        s = cache.num_slots
        dev = self.device
        self.eos = torch.tensor(request.eos_token_ids or [-1], device=dev)
        self.num_generated = torch.zeros(s, dtype=torch.long, device=dev)
        self.done = torch.ones(s, dtype=torch.bool, device=dev)
        self.out_tokens = torch.full((s, r), request.pad_token_id, dtype=torch.long, device=dev)
        self.out_log_probs = torch.zeros((s, r), dtype=torch.float32, device=dev)
        self.responses = torch.full((n, r), request.pad_token_id, dtype=torch.long, device=dev)
        self.log_probs = torch.zeros((n, r), dtype=torch.float32, device=dev)
        self.lengths = torch.zeros(n, dtype=torch.long, device=dev)
        self.max_write = cache.max_len - 1
        # RoPE table for every position this call can reach, built before any graph is captured
        runner.decoder.ensure_rope(int(pos.max()) + r + 1)

    # ------------------------------------------------------------------ main loop

    def run(self) -> Generated:
        progress = _progress(len(self.keys), self.options.show_progress)
        since_check = 0
        self._fill_slots()
        self._update_earliest_start()
        while self.pool.num_active():
            if since_check >= self.options.check_interval or self._some_slot_at_length():
                since_check = 0
                progress.update(self._collect_finished())
                if self.queue:
                    self._fill_slots()
                else:
                    self._compact()
                self._update_earliest_start()
                if not self.pool.num_active():
                    break
            self._decode_step()
            since_check += 1
        progress.close()
        return Generated(self.responses, self.lengths, self.log_probs if self.request.calculate_log_probs else None)

    def _some_slot_at_length(self) -> bool:
        """Known on the host without a sync: a slot that started ``R - 1`` steps ago has surely finished."""
        return self.step_count - self._earliest_start + 1 >= self.request.response_length

    def _update_earliest_start(self) -> None:
        active = self.pool.active_slots()
        self._earliest_start = min((self.slot_start_step[s] for s in active), default=self.step_count)

    # ------------------------------------------------------------------ prefill

    def _fill_slots(self) -> None:
        while (plan := plan_prefill(self.queue, self.keys, self.pool, self.options.max_batched_tokens,
                                    self.options.share_prefix)) is not None:
            self._prefill(plan)

    def _prefill(self, plan: PrefillPlan) -> None:
        """Prefill ``plan.unique`` prompts, copy their KV to ``plan.slots``, sample each slot's first token."""
        runner, dev = self.runner, self.device
        rows = [self.prompt_ids[r] for r in plan.unique]
        width = max(len(p) for p in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        pos = torch.zeros(len(rows), width, dtype=torch.long)
        for j, r in enumerate(plan.unique):  # right-pad: real tokens first, so causal attention never sees padding
            ids[j, : len(rows[j])] = rows[j]
            pos[j, : len(rows[j])] = self.prompt_pos[r]
        last = torch.tensor([len(p) - 1 for p in rows])
        slots = torch.tensor(plan.slots, device=dev)
        source = torch.tensor(plan.source, device=dev)
        logits = runner.prefill(ids.to(dev), pos.to(dev), last.to(dev), slots, source)  # (U, V)
        tokens, log_probs = runner.sample(logits[source], self.request.sampling, self.generator)  # (M,)
        last_pos = pos.gather(1, last[:, None]).squeeze(1).to(dev)[source]
        runner.tokens[slots] = tokens
        runner.positions[slots] = last_pos + 1
        runner.write_index[slots] = last.to(dev)[source] + 1
        self.num_generated[slots] = 1
        self.out_tokens[slots] = self.request.pad_token_id
        self.out_tokens[slots, 0] = tokens
        self.out_log_probs[slots] = 0.0
        self.out_log_probs[slots, 0] = log_probs
        self.done[slots] = self._finishes(tokens, self.num_generated[slots])
        for s in plan.slots:
            self.slot_start_step[s] = self.step_count

    def _finishes(self, tokens: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        at_length = generated >= self.request.response_length
        if self.request.ignore_eos:
            return at_length
        return at_length | torch.isin(tokens, self.eos)

    # ------------------------------------------------------------------ decode

    def _decode_step(self) -> None:
        """Decode the first B slots and append one token to every unfinished one (all on the device)."""
        runner = self.runner
        b = runner.decode_batch_size(self.pool.high_water())
        logits = runner.decode(b)  # (B, V)
        tokens, log_probs = runner.sample(logits, self.request.sampling, self.generator)  # (B,)
        active = ~self.done[:b]
        n_gen = self.num_generated[:b]
        rows = torch.arange(b, device=self.device)
        col = n_gen.clamp(max=self.request.response_length - 1)
        self.out_tokens[rows, col] = torch.where(active, tokens, self.out_tokens[rows, col])
        self.out_log_probs[rows, col] = torch.where(active, log_probs, self.out_log_probs[rows, col])
        n_gen += active
        self.done[:b] |= active & self._finishes(tokens, n_gen)
        step = active.long()
        runner.tokens[:b] = torch.where(active, tokens, runner.tokens[:b])
        runner.positions[:b] += step
        runner.write_index[:b] = (runner.write_index[:b] + step).clamp(max=self.max_write)
        self.step_count += 1

    def _collect_finished(self) -> int:
        """One host sync: move finished slots' outputs to their rows and free the slots; returns how many."""
        high = self.pool.high_water()
        if high == 0:
            return 0
        done = self.done[:high].cpu().tolist()
        slots = [s for s in self.pool.active_slots() if done[s]]
        if not slots:
            return 0
        requests = self.pool.release(slots)
        src = torch.tensor(slots, device=self.device)
        dst = torch.tensor(requests, device=self.device)
        self.responses[dst] = self.out_tokens[src]
        self.log_probs[dst] = self.out_log_probs[src]
        self.lengths[dst] = self.num_generated[src]
        return len(slots)

    def _compact(self) -> None:
        """Move surviving sequences into the lowest slots so the decode batch can shrink."""
        runner = self.runner
        if runner.decode_batch_size(self.pool.num_active()) >= runner.decode_batch_size(self.pool.high_water()):
            return
        moves = self.pool.compaction_moves()
        src = torch.tensor([m[0] for m in moves], device=self.device)
        dst = torch.tensor([m[1] for m in moves], device=self.device)
        runner.cache.move_slots(src, dst)
        for buf in (runner.tokens, runner.positions, runner.write_index, self.num_generated, self.done,
                    self.out_tokens, self.out_log_probs):
            buf[dst] = buf[src]
        self.done[src] = True
        for s, d in moves:
            self.slot_start_step[d] = self.slot_start_step[s]


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool):
    """A tqdm bar over finished sequences for long generations (only on a terminal), else a no-op."""
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="rollout", unit="seq", disable=None, mininterval=1.0, leave=False)
