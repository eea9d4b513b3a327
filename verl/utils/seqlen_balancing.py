"""verl's ``verl.utils.seqlen_balancing``: splitting samples into groups of near-equal token load.

:func:`greedy_partition` is the one balancing algorithm of this library (longest item first onto the lightest group
that still has room); the data-parallel balancing of the trainer (``trainer.balance_batch``) and the token-budget
micro-batches of the workers (``use_dynamic_bsz``) use it too. verl's :func:`get_seqlen_balanced_partitions` uses
the Karmarkar-Karp differencing method instead: the groups here may differ from verl's, with the same guarantees
(``k`` non-empty groups covering every index, equal sizes when asked, each group's indices sorted).
"""

from __future__ import annotations

import copy
import heapq
from itertools import chain
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from verl.protocol import DataProto

if TYPE_CHECKING:
    from tensordict import TensorDict

__all__ = [
    "calculate_workload", "ceildiv", "get_group_balanced_partitions", "get_reverse_idx",
    "get_seqlen_balanced_partitions", "greedy_partition",
    "log_seqlen_unbalance", "prepare_dynamic_batch", "rearrange_micro_batches", "restore_dynamic_batch",
    "roundup_divisible",
]  # fmt: skip


def greedy_partition(seqlen_list: list[int], k_partitions: int, equal_size: bool) -> list[list[int]]:
    """``k_partitions`` groups of indices with near-equal sums of ``seqlen_list``: the largest item first, each onto
    the lightest group that still has room (with ``equal_size`` a group holds ``len / k`` items). Groups may be
    empty when there are fewer items than groups; indices keep their order within a group."""
    n = len(seqlen_list)
    if k_partitions < 1:
        raise ValueError(f"k_partitions must be >= 1, got {k_partitions}")
    if equal_size and n % k_partitions:
        raise ValueError(f"equal_size needs the {n} items to divide into {k_partitions} groups")
    room = n // k_partitions if equal_size else n
    heap = [(0, p) for p in range(k_partitions)]
    groups: list[list[int]] = [[] for _ in range(k_partitions)]
    for i in sorted(range(n), key=lambda i: -seqlen_list[i]):
        full = []
        load, p = heapq.heappop(heap)
        while len(groups[p]) == room:
            full.append((load, p))
            load, p = heapq.heappop(heap)
        groups[p].append(i)
        heapq.heappush(heap, (load + seqlen_list[i], p))
        for item in full:
            heapq.heappush(heap, item)
    return [sorted(g) for g in groups]


def get_seqlen_balanced_partitions(seqlen_list: list[int], k_partitions: int, equal_size: bool) -> list[list[int]]:
    """``k_partitions`` non-empty groups of sorted indices whose ``seqlen_list`` sums are balanced (see the module)."""
    if len(seqlen_list) < k_partitions:
        raise ValueError(f"number of items: {len(seqlen_list)} < k_partitions: {k_partitions}")
    return greedy_partition(seqlen_list, k_partitions, equal_size)


def get_group_balanced_partitions(seqlen_list: list[int], uid_list: list, k_partitions: int) -> list[list[int]]:
    """``k_partitions`` groups of sample indices balanced by :func:`calculate_workload`, keeping each run of
    consecutive samples with the same uid (a prompt's responses) together; every partition gets the same number
    of runs."""
    if len(seqlen_list) != len(uid_list):
        raise ValueError(f"{len(seqlen_list)} sequence lengths but {len(uid_list)} uids")
    runs: list[list[int]] = []
    for i, uid in enumerate(uid_list):
        if runs and uid_list[runs[-1][0]] == uid:
            runs[-1].append(i)
        else:
            runs.append([i])
    if len(runs) < k_partitions:
        raise ValueError(f"{len(runs)} uid groups cannot fill {k_partitions} partitions; use fewer ranks or a larger batch")
    loads = [int(calculate_workload(torch.tensor([seqlen_list[i] for i in run])).sum()) for run in runs]
    parts = get_seqlen_balanced_partitions(loads, k_partitions, equal_size=True)
    return [sorted(i for g in part for i in runs[g]) for part in parts]


def log_seqlen_unbalance(seqlen_list: list[int], partitions: list[list[int]], prefix: str) -> dict[str, float]:
    """Load spread before (consecutive equal chunks) and after balancing (``partitions``), as verl's metrics."""
    k = len(partitions)
    size = len(seqlen_list) // k
    before = [sum(seqlen_list[o: o + size]) for o in range(0, len(seqlen_list), size)]
    after = [sum(seqlen_list[i] for i in p) for p in partitions]
    return {f"{prefix}/min": min(before), f"{prefix}/max": max(before), f"{prefix}/minmax_diff": max(before) - min(before),
            f"{prefix}/balanced_min": min(after), f"{prefix}/balanced_max": max(after), f"{prefix}/mean": sum(before) / k}


def calculate_workload(seqlen_list: torch.Tensor) -> torch.Tensor:
    """Relative compute of a sequence of each length (a 7B-sized dense layer: linear term plus attention's square)."""
    return 24576 * seqlen_list + seqlen_list**2


def ceildiv(a: int, b: int) -> int:
    return -(a // -b)


def roundup_divisible(a: int, b: int) -> int:
    return ((a + b - 1) // b) * b


def get_reverse_idx(idx_map: list[int]) -> list[int]:
    """The inverse permutation: ``out[idx_map[i]] = i``."""
    out = list(idx_map)
    for i, j in enumerate(idx_map):
        out[j] = i
    return out


def rearrange_micro_batches(batch: TensorDict, max_token_len: int, dp_group=None, num_batches_divided_by: int | None = None,
                            same_micro_num_in_dp: bool = True, min_num_micro_batch: int | None = None,
                            use_dynamic_bsz_balance: bool = True) -> tuple[list[TensorDict], list[list[int]]]:
    """verl's dynamic micro-batching of a TensorDict with ``attention_mask``: ``ceil(tokens / max_token_len)``
    micro-batches (at least ``min_num_micro_batch``; the maximum over ``dp_group`` when ``same_micro_num_in_dp``;
    rounded up to a multiple of ``num_batches_divided_by``), balanced by :func:`calculate_workload`. Returns the
    micro-batches and the sample indices of each."""
    lengths = batch["attention_mask"].sum(dim=1)
    if max_token_len < batch["attention_mask"].shape[-1]:
        raise ValueError(f"max_token_len={max_token_len} is below the sequence length "
                         f"{batch['attention_mask'].shape[-1]}; raise it to at least that")
    count = min(len(lengths), ceildiv(int(lengths.sum()), max_token_len))
    if min_num_micro_batch is not None:
        count = max(count, min_num_micro_batch)
    if same_micro_num_in_dp and dist.is_initialized():
        from verl.workers.batching import max_over_ranks

        count = max_over_ranks(count, dp_group)
    if num_batches_divided_by is not None:
        count = roundup_divisible(count, num_batches_divided_by)
    if count > len(lengths):
        raise ValueError(f"{count} micro-batches are needed but this rank has only {len(lengths)} sequences")
    workloads = calculate_workload(lengths).tolist()
    parts = get_seqlen_balanced_partitions(workloads, count, equal_size=False)
    if use_dynamic_bsz_balance:  # heaviest in the middle, as verl orders them
        parts.sort(key=lambda p: (sum(workloads[i] for i in p), p[0]), reverse=True)
        parts = parts[::2][::-1] + parts[1::2]
    return [batch[torch.tensor(p)] for p in parts], parts


def prepare_dynamic_batch(data: DataProto, max_token_len: int, dp_group=None, num_batches_divided_by: int | None = None,
                          same_micro_num_in_dp: bool = True, min_num_micro_batch: int | None = None,
                          use_dynamic_bsz_balance: bool = True) -> tuple[list[DataProto], list[list[int]]]:
    """:func:`rearrange_micro_batches` for a DataProto: micro-batch DataProtos (non-tensor columns and a copy of
    ``meta_info`` each) and their sample indices (undo the order with :func:`restore_dynamic_batch`)."""
    _, parts = rearrange_micro_batches(data.batch, max_token_len, dp_group, num_batches_divided_by,
                                       same_micro_num_in_dp, min_num_micro_batch, use_dynamic_bsz_balance)
    out = []
    for p in parts:
        mb = data[p]
        mb.meta_info = copy.deepcopy(data.meta_info)
        out.append(mb)
    return out, parts


def restore_dynamic_batch(data: torch.Tensor, batch_idx_list: list[list[int]]) -> torch.Tensor:
    """Rows of ``data`` (micro-batch results concatenated) back in the original sample order."""
    order = list(chain.from_iterable(batch_idx_list))
    if len(order) != data.shape[0]:
        raise ValueError(f"{len(order)} indices for {data.shape[0]} rows")
    return data[torch.tensor(get_reverse_idx(order), dtype=torch.long)]
