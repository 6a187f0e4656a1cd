"""Between ticks a voter that is not leading looks whether it now leads: a failover's
first plan comes when the new leader leads, not up to a whole tick later."""

from __future__ import annotations

import asyncio
import time

from ringrift_fleet.node import sleep_until


def test_a_follower_that_becomes_leader_ticks_at_once() -> None:
    async def scenario() -> tuple[float, int]:
        stop = asyncio.Event()
        begun = time.monotonic()
        looks = [0]

        def leading() -> bool:
            looks[0] += 1
            return time.monotonic() - begun > 0.2  # elected 0.2 s into the wait

        await sleep_until(begun + 30.0, stop, wake=leading)
        return time.monotonic() - begun, looks[0]

    took, looks = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert took < 5.0, f"slept {took:.2f}s of a 30 s tick after becoming leader"
    assert looks >= 2


def test_without_a_wake_it_sleeps_to_the_tick_or_the_stop() -> None:
    async def scenario() -> tuple[float, float]:
        stop = asyncio.Event()
        begun = time.monotonic()
        await sleep_until(begun + 0.3, stop)
        full = time.monotonic() - begun
        asyncio.get_running_loop().call_later(0.1, stop.set)
        begun = time.monotonic()
        await sleep_until(begun + 30.0, stop, wake=lambda: False)
        return full, time.monotonic() - begun

    full, stopped = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert full >= 0.3
    assert stopped < 5.0, f"a stop took {stopped:.2f}s to end a 30 s wait"
