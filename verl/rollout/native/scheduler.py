"""Host-side bookkeeping of continuous batching: which sequence sits in which cache slot, what to prefill next.

Pure Python (no tensors), so the policy is easy to read and to test:

- sequences wait in a FIFO queue; whenever slots are free, the next ones are prefilled (at most
  ``max_num_batched_tokens`` prompt tokens per forward pass) and take the lowest free slots;
- identical prompts taken together are prefilled once (prefix sharing) and their KV rows copied;
- when the queue is empty and sequences finish, the survivors are moved down (compaction) so the decode step can
  run on a smaller batch ``B`` (the first ``B`` slots).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PrefillPlan", "SlotPool", "bucket_sizes", "pick_bucket", "plan_prefill"]


@dataclass
class PrefillPlan:
    """One prefill forward pass: ``requests[j]`` goes to slot ``slots[j]`` and reads prompt row ``source[j]``
    of ``unique`` (the distinct prompts of the pass, as request ids)."""

    requests: list[int]
    slots: list[int]
    unique: list[int]
    source: list[int]


class SlotPool:
    """Ownership of ``num_slots`` KV-cache slots by request ids (``-1`` = free)."""

    def __init__(self, num_slots: int):
        self.owner = [-1] * num_slots
        self._active = 0

    @property
    def num_slots(self) -> int:
        return len(self.owner)

    def free_slots(self) -> list[int]:
        return [s for s, r in enumerate(self.owner) if r < 0]

    def active_slots(self) -> list[int]:
        return [s for s, r in enumerate(self.owner) if r >= 0]

    def num_active(self) -> int:
        return self._active

    def high_water(self) -> int:
        """One past the highest occupied slot: the decode batch must cover slots ``0 .. high_water-1``."""
        for s in range(len(self.owner) - 1, -1, -1):
            if self.owner[s] >= 0:
                return s + 1
        return 0

    def assign(self, requests: Sequence[int]) -> list[int]:
        """Give each request the lowest free slot; returns the slots."""
        free = self.free_slots()
        if len(requests) > len(free):
            raise RuntimeError(f"{len(requests)} requests but only {len(free)} free slots")
        for r, s in zip(requests, free):
            self.owner[s] = r
        self._active += len(requests)
        return free[: len(requests)]

    def release(self, slots: Sequence[int]) -> list[int]:
        """Free ``slots``; returns the request ids that held them."""
        out = [self.owner[s] for s in slots]
        if min(out, default=0) < 0:
            raise RuntimeError(f"releasing free slot(s) {[s for s, r in zip(slots, out) if r < 0]}")
        for s in slots:
            self.owner[s] = -1
        self._active -= len(slots)
        return out

    def compaction_moves(self) -> list[tuple[int, int]]:
        """``(src, dst)`` moves bringing every active slot below ``num_active`` (highest src to lowest dst)."""
        n = self.num_active()
        holes = [s for s in range(n) if self.owner[s] < 0]
        movers = [s for s in range(len(self.owner) - 1, n - 1, -1) if self.owner[s] >= 0]
        moves = list(zip(movers, holes))
        for src, dst in moves:
            self.owner[dst], self.owner[src] = self.owner[src], -1
        return moves


def plan_prefill(
    queue: deque[int],
    prompt_keys: Sequence[tuple[int, ...]],
    pool: SlotPool,
    max_batched_tokens: int,
    share_prefix: bool,
) -> PrefillPlan | None:
    """Pop the next requests that fit in the free slots and in one prefill pass; ``None`` if none can start.

    A pass costs ``(distinct prompts) x (longest prompt)`` tokens (prompts are right-padded together); the first
    request is always taken, so a prompt longer than ``max_batched_tokens`` still runs (alone).
    """
    free = len(pool.free_slots())
    if not queue or free == 0:
        return None
    requests: list[int] = []
    unique: list[int] = []
    source: list[int] = []
    key_to_row: dict[tuple[int, ...], int] = {}
    longest = 0
    while queue and len(requests) < free:
        r = queue[0]
        key = prompt_keys[r]
        row = key_to_row.get(key) if share_prefix else None
        if row is None:
            cost = (len(unique) + 1) * max(longest, len(key))
            if requests and cost > max_batched_tokens:
                break
            row = len(unique)
            unique.append(r)
            longest = max(longest, len(key))
            if share_prefix:
                key_to_row[key] = row
        queue.popleft()
        requests.append(r)
        source.append(row)
    return PrefillPlan(requests=requests, slots=pool.assign(requests), unique=unique, source=source)


def bucket_sizes(max_batch: int) -> list[int]:
    """Decode batch sizes captured as CUDA graphs: 1, 2, 4, 8, 16, then multiples of 32 up to ``max_batch``.

    Steps of 32 keep the padding waste of large batches small while the number of graphs stays around 20.
    """
    sizes = [b for b in (1, 2, 4, 8, 16) if b <= max_batch]
    sizes += list(range(32, max_batch + 1, 32))
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return sizes


def pick_bucket(buckets: Sequence[int], needed: int) -> int | None:
    """The smallest bucket ``>= needed``; ``None`` when ``needed`` exceeds every bucket (run eagerly)."""
    for b in buckets:
        if b >= needed:
            return b
    return None
