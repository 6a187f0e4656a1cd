"""The leader's tick runs on a thread of its own: a shared executor full of other
waits (ledger encodings for every non-voter after a failover, forwarded writes
waiting out a lost quorum) does not hold it back."""

from __future__ import annotations

import asyncio
import threading

from ringrift_fleet.scheduler.service import tick_handler


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
            lambda: order.append("watch"),
        )
        try:
            await asyncio.wait_for(on_tick(), 10)
            await asyncio.wait_for(on_tick(), 10)
            done_while_blocked = not release.is_set()
        finally:
            release.set()
            await asyncio.gather(*blocked)
        # the watch, queued on the shared executor, runs once that frees up
        await asyncio.sleep(0.1)
        return done_while_blocked, loop.is_running()

    while_blocked, _ = asyncio.run(scenario())
    assert while_blocked, "the tick waited for the shared executor"
    assert len(ticked) == 2 and all(name.startswith("beat") for name in ticked), ticked
    assert order.count("metrics") == 2 and order.count("tick") == 2
    assert order.index("metrics") < order.index("tick"), "the host's figures go first"
    assert 1 <= order.count("watch") <= 2, "at most one look at the Sentinels at a time"
