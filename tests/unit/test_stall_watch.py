"""The stall watch: a stall of the whole interpreter is noticed, counted and its stacks dumped."""

from __future__ import annotations

import ctypes
import threading
import time
from pathlib import Path

import pytest

from ringrift_fleet.stall_watch import StallStats, StallWatch, held_for


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
    assert threading.active_count() >= 1 and "stall-watch" not in {
        t.name for t in threading.enumerate()
    }


@pytest.mark.timeout(30)
def test_a_thread_holding_the_interpreter_is_caught_with_its_stack(tmp_path: Path) -> None:
    out = tmp_path / "stacks.txt"
    stats = StallStats()
    with out.open("w") as f:
        watch = StallWatch(0.5, stats, file=f)
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
    stacks = out.read_text()
    # written by faulthandler while the hold lasted: it names the function that held it
    assert "hold_the_interpreter" in stacks, stacks
    assert "Thread 0x" in stacks, stacks


@pytest.mark.timeout(30)
def test_stopped_watch_dumps_nothing_later(tmp_path: Path) -> None:
    out = tmp_path / "stacks.txt"
    with out.open("w") as f:
        watch = StallWatch(0.3, file=f)
        assert watch.start()
        time.sleep(0.2)
        watch.stop()
        hold_the_interpreter(0.8)  # past the threshold, but nobody is watching
    assert out.read_text() == ""
