"""A Bully leader that stops during a switch to Raft: it leads on until the Raft quorum
has elected and asks it to yield, so the restart leaves no leaderless gap.

The other two voters are small HTTP servers on loopback that answer the Bully routes
as Raft voters do while their quorum has not elected yet (they grant the leader's
renewals and say ``backend: raft``).  The stopping leader is the real
``BullyElection`` with the wait the coordinator derives from its Raft timeouts.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.consensus.bully import BullyElection, raft_successor_wait
from ringrift_fleet.consensus.voters import Voter

LEASE = 2.0


async def raft_voter(name: str, raft: bool) -> tuple[web.AppRunner, int]:
    async def ping(request: web.Request) -> web.Response:
        backend = "raft" if raft else "bully"
        return web.json_response({"node": name, "backend": backend, "raft_leader": None})

    async def lease(request: web.Request) -> web.Response:
        body = await request.json()
        epoch = body["epoch"]
        answer = {"granted": True, "holder": body["candidate"], "epoch": epoch, "max_epoch": epoch}
        return web.json_response(answer)

    async def release(request: web.Request) -> web.Response:
        return web.json_response({"released": True})

    app = web.Application()
    app.add_routes(
        [
            web.get("/consensus/bully/ping", ping),
            web.post("/consensus/bully/lease", lease),
            web.post("/consensus/bully/release", release),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, int(port)


async def stop_the_leader(others_on_raft: bool, yield_after: float | None) -> dict[str, float]:
    """Elect voter "a", stop it, and (after ``yield_after`` s) have the Raft leader ask
    it to yield.  Returns how long it led after the stop began and how long stop took."""
    runners, voters = [], [Voter("a", "127.0.0.1", 1, 1)]
    for name in ("b", "c"):
        runner, port = await raft_voter(name, others_on_raft)
        runners.append(runner)
        voters.append(Voter(name, "127.0.0.1", 1, port))
    wait = raft_successor_wait(P2PConfig().RAFT_MAX_TIMEOUT)
    election = BullyElection("a", voters, lease=LEASE, token="", raft_successor_wait=wait)
    try:
        await election.start()
        for _ in range(100):  # at most 5 s
            if election.is_leader():
                break
            await asyncio.sleep(0.05)
        assert election.is_leader(), "voter a never led"
        t0 = time.monotonic()
        stopping = asyncio.create_task(election.stop())
        led_until = t0
        deadline = t0 + (yield_after if yield_after is not None else wait + 2.0)
        while not stopping.done() and time.monotonic() < deadline:
            if election.is_leader():
                led_until = time.monotonic()
            await asyncio.sleep(0.02)
        if yield_after is not None:  # the Raft quorum's leader asks for the hand-over
            assert election.is_leader(), f"stopped leading {led_until - t0:.2f}s into the stop"
            await election.yield_to("b", 10)
        await asyncio.wait_for(stopping, wait + 5.0)
        return {"led_s": led_until - t0, "stop_s": time.monotonic() - t0}
    finally:
        for runner in runners:
            await runner.cleanup()


def test_a_stopping_leader_leads_until_a_raft_quorum_that_just_formed_takes_over() -> None:
    # the worst case: the voter that makes the Raft majority started just before the
    # stop, so it refuses pre-votes for two maximum election timeouts, and the election
    # timer then fires within one more
    raft_max = P2PConfig().RAFT_MAX_TIMEOUT
    elected_after = 2 * raft_max + 0.9 * raft_max
    times = asyncio.run(stop_the_leader(others_on_raft=True, yield_after=elected_after))
    assert times["led_s"] >= elected_after - 0.1, times
    assert times["stop_s"] < elected_after + 2.0, times  # yielded, then stopped at once


def test_without_a_raft_quorum_a_stopping_leader_hands_back_at_once() -> None:
    times = asyncio.run(stop_the_leader(others_on_raft=False, yield_after=None))
    assert times["stop_s"] < 1.5, times  # settle and release, no wait for a successor
