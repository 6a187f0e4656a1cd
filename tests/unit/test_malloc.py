"""The coordinator gives back heap memory its threads freed (glibc's malloc_trim).

What a coordinator's executor threads do all day, in small: a thread allocates
many buffers above Python's small-object size (so glibc serves them from that
thread's arena), then frees most of them but keeps a few scattered ones alive, so
the arena cannot shrink from its top.  RSS stays up until ``malloc_trim``.
"""

from __future__ import annotations

import asyncio
import threading

import psutil
import pytest

from ringrift_fleet import malloc
from tests.support.prereq import need


@pytest.fixture(autouse=True)
def glibc() -> None:
    need(malloc.available(), "glibc's malloc_trim (the fleet's Linux hosts have it)")


MB = 2**20


def fragment_an_arena(total_mb: int = 200, keep_every: int = 64) -> list[bytes]:
    """Allocate ``total_mb`` in 8 kB buffers on a thread, keep every 64th one."""
    kept: list[bytes] = []

    def churn() -> None:
        held = [bytes(8192) for _ in range(total_mb * MB // 8192)]
        kept.extend(held[::keep_every])
        del held

    t = threading.Thread(target=churn)
    t.start()
    t.join()
    return kept


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def test_a_trim_gives_back_what_a_thread_freed_around_what_it_kept() -> None:
    malloc.trim()
    kept = fragment_an_arena()
    before = rss()
    assert malloc.trim()
    after = rss()
    # 200 MB churned, ~3 MB kept alive: most of the rest goes back to the system
    assert before - after > 100 * MB, (before / MB, after / MB)
    assert len(kept) > 0


def test_the_coordinators_loop_trims_and_reports_it() -> None:
    stats = malloc.TrimStats()

    async def run() -> None:
        kept = fragment_an_arena()
        task = asyncio.create_task(malloc.trim_every(0.05, stats))
        for _ in range(100):  # at most 5 s
            if stats.trims >= 2:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert kept

    asyncio.run(run())
    shown = stats.as_dict()
    assert shown["malloc_trim"] is True and int(str(shown["trims"])) >= 2, shown
    assert float(str(shown["trim_released_mb"])) > 100, shown  # the first trim's
    assert float(str(shown["rss_mb"])) > 0


def test_interval_zero_turns_it_off() -> None:
    stats = malloc.TrimStats()
    asyncio.run(asyncio.wait_for(malloc.trim_every(0, stats), 1.0))  # returns at once
    assert stats.trims == 0
