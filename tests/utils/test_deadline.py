"""verl.utils.deadline in a process that forks (reward-loop workers fork the trainer)."""

import multiprocessing
import time

from verl.utils.deadline import _BACKSTOP, call_with_deadline


def _child(queue):
    start = time.monotonic()
    late = lambda entry: TimeoutError("late")  # noqa: E731
    # a shorter deadline than the parent's re-arms the timer; an idle second lets the watchdog cancel it
    value = call_with_deadline(lambda: 7, 2, late, hard_exit_after_s=1)
    time.sleep(1.5)
    value += call_with_deadline(lambda: 1, 2, late, hard_exit_after_s=1)
    queue.put((value, time.monotonic() - start))


def test_a_child_forked_while_the_backstop_timer_is_armed_can_arm_its_own():
    # a call with a hard exit arms faulthandler's timer, which stays armed for a moment after the call; a child
    # forked then used to wait forever for the parent's timer thread on its own first call
    assert call_with_deadline(lambda: 1, 30, lambda entry: TimeoutError("late"), hard_exit_after_s=30) == 1
    assert _BACKSTOP.armed_at is not None
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    proc.join(20)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive, "the forked child hung on its first deadline"
    value, seconds = queue.get(timeout=5)
    assert value == 8 and seconds < 10
    assert call_with_deadline(lambda: 2, 30, lambda entry: TimeoutError("late"), hard_exit_after_s=30) == 2
