"""Continuous-batching bookkeeping: slot ownership, prefill planning with prefix sharing, compaction, buckets."""

from collections import deque

from verl.rollout.native.scheduler import SlotPool, bucket_sizes, pick_bucket, plan_prefill


def test_plan_groups_identical_prompts_and_fills_lowest_slots():
    keys = [(5, 6, 7), (5, 6, 7), (8, 9), (8, 9), (1,)]
    pool = SlotPool(4)
    queue = deque(range(5))
    plan = plan_prefill(queue, keys, pool, max_batched_tokens=100, share_prefix=True)
    assert plan.requests == [0, 1, 2, 3] and plan.slots == [0, 1, 2, 3]
    assert plan.unique == [0, 2] and plan.source == [0, 0, 1, 1]  # two prefills copied to four slots
    assert list(queue) == [4] and plan_prefill(queue, keys, pool, 100, True) is None  # no free slot
    no_share = plan_prefill(deque(range(4)), keys, SlotPool(4), 100, share_prefix=False)
    assert no_share.unique == [0, 1, 2, 3] and no_share.source == [0, 1, 2, 3]


def test_plan_respects_the_token_budget_but_always_takes_one():
    keys = [tuple(range(10)), tuple(range(1, 11)), tuple(range(2, 12))]
    queue = deque(range(3))
    plan = plan_prefill(queue, keys, SlotPool(8), max_batched_tokens=25, share_prefix=True)
    assert plan.requests == [0, 1]  # a third distinct 10-token prompt would make 30 > 25 tokens
    huge = plan_prefill(deque([0]), keys, SlotPool(8), max_batched_tokens=4, share_prefix=True)
    assert huge.requests == [0]


def test_release_and_compaction_moves_survivors_down():
    pool = SlotPool(6)
    pool.assign([10, 11, 12, 13, 14, 15])
    assert pool.release([0, 2, 3]) == [10, 12, 13]
    assert pool.high_water() == 6 and pool.num_active() == 3
    moves = pool.compaction_moves()
    assert moves == [(5, 0), (4, 2)]
    assert pool.owner == [15, 11, 14, -1, -1, -1] and pool.high_water() == 3


def test_buckets_cover_every_batch():
    sizes = bucket_sizes(512)
    assert sizes[:6] == [1, 2, 4, 8, 16, 32] and sizes[-1] == 512 and len(sizes) == 21
    assert bucket_sizes(5) == [1, 2, 4, 5]
    assert pick_bucket(sizes, 33) == 64 and pick_bucket(sizes, 1) == 1 and pick_bucket(sizes, 600) is None
