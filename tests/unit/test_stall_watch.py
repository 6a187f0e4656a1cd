"""The stall watch: a stall of the whole interpreter is noticed, counted and logged
with where every thread was."""

from __future__ import annotations

import ctypes
import logging
import threading
import time

import pytest

from ringrift_fleet.stall_watch import StallStats, StallWatch, held_for, thread_stacks


def hold_the_interpreter(seconds: float) -> None:
    """Sleep in C *without* letting go of the interpreter lock, as a long pickling,
    JSON encoding or collection does (a PyDLL call keeps the lock)."""
    ctypes.PyDLL(None).usleep(int(seconds * 1_000_000))


def test_held_for_is_the_lateness_past_the_period() -> None:
    assert held_for(10.0, 10.5, 0.5) == 0.0
    assert held_for(10.0, 10.4, 0.5) == 0.0  # early wake-ups are not negative stalls
    assert held_for(10.0, 13.0, 0.5) == pytest.approx(2.5)


def test_no_threshold_no_thread() -> None:
    watch = StallWatch(0.0)
    assert watch.start() is False
    watch.stop()
    assert "stall-watch" not in {t.name for t in threading.enumerate()}


def test_thread_stacks_name_the_threads_and_their_frames() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="waiter", daemon=True)
    t.start()
    try:
        text = thread_stacks(skip=threading.get_ident())
    finally:
        stop.set()
        t.join()
    assert "thread waiter:" in text and "in wait" in text
    assert "test_thread_stacks_name_the_threads" not in text  # the skipped caller


@pytest.mark.timeout(30)
def test_a_thread_holding_the_interpreter_is_caught_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ringrift_fleet.stall_watch")
    stats = StallStats()
    watch = StallWatch(0.5, stats)
    assert watch.start()
    try:
        time.sleep(0.3)
        hold_the_interpreter(2.0)
        deadline = time.monotonic() + 5.0
        while stats.stalls == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.stop()
    assert stats.stalls >= 1, stats
    assert 1.2 <= stats.max_s <= 4.0, stats  # the 2 s hold, less what it took to notice
    assert stats.as_dict()["threshold_s"] == 0.5 and stats.last_at is not None
    (record,) = [r for r in caplog.records if "coordinator stalled" in r.getMessage()]
    text = record.getMessage()
    # where the holder was as the stall ended: this test, just past the hold
    assert "thread MainThread:" in text and "test_a_thread_holding_the_interpreter" in text
