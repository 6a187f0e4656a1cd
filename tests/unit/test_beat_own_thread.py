"""The leader's tick runs on a thread of its own: a shared executor full of other
waits (ledger encodings for every non-voter after a failover, forwarded writes
waiting out a lost quorum) does not hold it back.  The look at the Sentinels runs
on a third: neither a tick waiting on the broker nor the shared executor holds it."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

from ringrift_fleet.scheduler.service import tick_handler, watch_loop


def test_a_tick_runs_while_every_thread_of_the_shared_executor_is_blocked() -> None:
    release = threading.Event()
    ticked: list[str] = []
    order: list[str] = []

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        # more blocked calls than the default executor has threads
        blocked = [asyncio.create_task(asyncio.to_thread(release.wait, 30)) for _ in range(64)]
        await asyncio.sleep(0.05)
        on_tick = tick_handler(
            lambda: ticked.append(threading.current_thread().name) or order.append("tick"),
            lambda: order.append("metrics"),
        )
        try:
            await asyncio.wait_for(on_tick(), 10)
            await asyncio.wait_for(on_tick(), 10)
            done_while_blocked = not release.is_set()
        finally:
            release.set()
            await asyncio.gather(*blocked)
        return done_while_blocked, loop.is_running()

    while_blocked, _ = asyncio.run(scenario())
    assert while_blocked, "the tick waited for the shared executor"
    assert len(ticked) == 2 and all(name.startswith("beat") for name in ticked), ticked
    assert order.count("metrics") == 2 and order.count("tick") == 2
    assert order.index("metrics") < order.index("tick"), "the host's figures go first"


def test_the_sentinels_are_looked_at_while_the_tick_and_the_shared_executor_wait() -> None:
    release = threading.Event()
    looks: list[tuple[float, str]] = []
    inside = threading.Lock()
    overlapped: list[bool] = []

    def look() -> None:
        overlapped.append(not inside.acquire(blocking=False))
        try:
            looks.append((time.monotonic(), threading.current_thread().name))
            if len(looks) == 2:
                raise ConnectionError("a Sentinel went away")  # the loop goes on
            time.sleep(0.05)
        finally:
            inside.release()

    async def scenario() -> None:
        blocked = [asyncio.create_task(asyncio.to_thread(release.wait, 30)) for _ in range(64)]
        on_tick = tick_handler(lambda: release.wait(30), lambda: None)
        tick = asyncio.create_task(on_tick())  # a tick held up on the broker
        watch = asyncio.create_task(watch_loop(look, 0.1))
        try:
            await asyncio.sleep(1.0)
            assert not tick.done(), "the tick should still be waiting"
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            release.set()
            await asyncio.gather(tick, *blocked)

    asyncio.run(scenario())
    assert 5 <= len(looks) <= 11, looks
    assert all(name.startswith("broker-watch") for _, name in looks), looks
    assert not any(overlapped), "two looks at the Sentinels at once"
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(looks)]
    assert min(gaps) >= 0.09, gaps
