"""A Raft leader whose fellow voters answer its ping rounds late stays the leader.

The hand-over gate (``HandoverRaft``) lets a Raft leader lead only after a round in
which a majority of voters answered and none named a Bully leader or held a Bully
grant.  In the 60-minute fleet soak, under load 25, the voters' pings took longer
than the round's 0.5 s timeout: a leader that Raft never deposed stopped leading
for rounds at a time, and a newly elected one did not start for many seconds.

The other voters are small HTTP servers on loopback that answer the ping as Raft
followers do, after a delay the test sets; the Raft replica is a stand-in that
says "leader with a quorum" (its term settable).  The gate and the rounds are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.handover import PING_TIMEOUT, HandoverRaft
from ringrift_fleet.consensus.voters import Voter

T = TypeVar("T")
SLOW = PING_TIMEOUT + 0.3  # later than one round's timeout, within a doubled one


class LeadingRaft:
    """Raft as the gate sees it: we lead with a quorum in ``raft_term``."""

    def __init__(self) -> None:
        self.node_id = "a"
        self.op_timeout = 1.0
        self.raft_term = 3

    def propose(self, op: dict[str, object], timeout: float | None = None) -> sm.Result:
        return {"ok": True}

    def propose_many(
        self, ops: Sequence[dict[str, object]], timeout: float | None = None
    ) -> list[sm.Result]:
        return [{"ok": True} for _ in ops]

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        yield sm.new_state()

    def is_leader(self) -> bool:
        return True

    def leader(self) -> str | None:
        return self.node_id

    def term(self) -> int:
        return self.raft_term

    def version(self) -> object:
        return 0

    def has_quorum(self) -> bool:
        return True

    def raft_status(self) -> dict[str, object]:
        return {}

    def history(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class Followers:
    """Voters b and c on loopback, answering pings after ``delay[name]`` s."""

    def __init__(self) -> None:
        self.delay = {"b": 0.0, "c": 0.0}
        self.holder: dict[str, str | None] = {"b": None, "c": None}
        self.runners: list[web.AppRunner] = []
        self.voters = [Voter("a", "127.0.0.1", 1, 1)]

    async def start(self) -> None:
        for name in ("b", "c"):
            app = web.Application()
            app.add_routes([web.get("/consensus/bully/ping", self._ping(name))])
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.runners.append(runner)
            self.voters.append(Voter(name, "127.0.0.1", 1, int(runner.addresses[0][1])))

    def _ping(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def ping(request: web.Request) -> web.Response:
            await asyncio.sleep(self.delay[name])
            body = {"node": name, "backend": "raft", "is_leader": False}
            return web.json_response({**body, "holder": self.holder[name], "store": None})

        return ping

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def _scenario(
    tmp: Path, body: Callable[[HandoverRaft, LeadingRaft, Followers], Awaitable[T]]
) -> T:
    followers = Followers()
    await followers.start()
    raft = LeadingRaft()
    gate = HandoverRaft(raft, followers.voters, state_dir=tmp, token="", lease=2.0)
    try:
        return await body(gate, raft, followers)
    finally:
        gate.close()
        await followers.stop()


def test_a_leader_whose_voters_answer_late_leads_on(tmp_path: Path) -> None:
    async def body(gate: HandoverRaft, raft: LeadingRaft, f: Followers) -> list[bool]:
        seen = []
        await gate.run_round()
        seen.append(gate.is_leader())  # both answered at once: the gate opens
        f.delay.update(b=SLOW, c=SLOW)
        for _ in range(3):  # nobody answers within the round's timeout
            await gate.run_round()
            seen.append(gate.is_leader())
        return seen

    assert asyncio.run(_scenario(tmp_path, body)) == [True, True, True, True]


def test_a_grant_a_late_round_sees_still_closes_the_gate(tmp_path: Path) -> None:
    async def body(gate: HandoverRaft, raft: LeadingRaft, f: Followers) -> list[bool]:
        await gate.run_round()
        opened = gate.is_leader()
        f.delay.update(c=SLOW)
        f.holder.update(b="c")  # b holds a live Bully grant for c
        await gate.run_round()
        return [opened, gate.is_leader()]

    assert asyncio.run(_scenario(tmp_path, body)) == [True, False]


def test_a_new_raft_term_needs_a_majority_again(tmp_path: Path) -> None:
    async def body(gate: HandoverRaft, raft: LeadingRaft, f: Followers) -> list[bool]:
        await gate.run_round()
        opened = gate.is_leader()
        raft.raft_term += 1  # deposed and elected again in between two rounds
        f.delay.update(b=1.5, c=1.5)  # and nobody answers within the round
        await gate.run_round()
        return [opened, gate.is_leader()]

    assert asyncio.run(_scenario(tmp_path, body)) == [True, False]


def test_a_new_leader_whose_voters_answer_late_starts_within_a_few_rounds(
    tmp_path: Path,
) -> None:
    async def body(gate: HandoverRaft, raft: LeadingRaft, f: Followers) -> list[bool]:
        f.delay.update(b=SLOW, c=SLOW)
        seen = []
        for _ in range(3):  # the round's timeout grows while too few answer in time
            await gate.run_round()
            seen.append(gate.is_leader())
        return seen

    seen = asyncio.run(_scenario(tmp_path, body))
    assert seen[0] is False and seen[-1] is True, seen
