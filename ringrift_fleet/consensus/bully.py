# mypy: disallow-any-explicit
"""Bully election with majority-granted leases: the fallback when Raft is off.

The highest-ranked reachable voter (``priority``, then name) asks every voter
for a lease of ``LEADER_LEASE_DURATION``.  A voter grants one holder at a
time, until that grant expires on the voter's own clock, so two leaders never
hold a majority at once.  The leader renews well before expiry and counts its
lease from *before* it asked, so its own view ends first; when a renewal
cannot reach a majority it stops acting as leader by the time its lease ends.
Each new lease raises the epoch, which is the Bully mode's term and fence.

:class:`LeaseBook` (the granting rule) and :func:`rank` are pure; the asyncio
loop around them is :class:`BullyElection`.  The ledger (:class:`BullyLedger`)
lives in SQLite on every voter: the leader applies writes and pushes them to
the followers, and a write counts once a majority of voters hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypedDict

import aiohttp
from aiohttp import web

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus.api import Ledger
from ringrift_fleet.consensus.remote import http_json
from ringrift_fleet.consensus.sqlite_ledger import SqliteStore
from ringrift_fleet.consensus.voters import Voter
from ringrift_fleet.http_input import bearer_ok, read_json_object
from ringrift_fleet.jsontypes import JSONMapping, JSONObject, JSONValue

log = logging.getLogger(__name__)


def replicate_fields(body: JSONMapping) -> tuple[JSONObject, int, int] | web.Response:
    """``op``, ``seq`` and ``epoch`` of a ``/consensus/bully/replicate`` body, or the 400
    that names the bad field (Bully followers and Raft voters in a switch both take it)."""
    op, seq, epoch = body.get("op"), body.get("seq"), body.get("epoch")
    if not isinstance(op, dict):
        return web.json_response({"error": "field 'op': expected an object"}, status=400)
    for name, value in (("seq", seq), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, int):
            return web.json_response({"error": f"field '{name}': expected an integer"}, status=400)
    assert isinstance(seq, int) and isinstance(epoch, int)
    return op, seq, epoch


def store_route(get_store: Callable[[], SqliteStore | None], token: str) -> web.RouteDef:
    """``GET /consensus/bully/store``: this voter's Bully SQLite copy, whatever backend
    runs now (a Raft voter keeps the one it had, for the hand-over)."""

    async def get_store_copy(request: web.Request) -> web.Response:
        if not bearer_ok(request, token):
            return web.json_response({"error": "needs Authorization: Bearer"}, status=401)
        store = get_store()
        if store is None:
            return web.json_response({"error": "no Bully copy on this node"}, status=503)
        with store.reading() as state:
            body = json.dumps({"version": store.seq, "state": state}, default=str)
        return web.Response(text=body, content_type="application/json")

    return web.get("/consensus/bully/store", get_store_copy)


def rank(voters: list[Voter]) -> list[Voter]:
    """Election order: higher priority first, then the name."""
    return sorted(voters, key=lambda v: (-v.priority, v.name))


class LedgerCopy(TypedDict):
    """A voter's ``GET /consensus/ledger`` answer, its fields checked."""

    state: sm.State
    version: int
    term: JSONValue  # an integer from a leader; checked where it matters


class LeaseAnswer(TypedDict):
    """A voter's answer to a lease request (``POST /consensus/bully/lease``)."""

    granted: bool
    holder: str | None  # whoever holds an unexpired lease now
    epoch: int | None  # the holder's epoch
    max_epoch: int  # the highest epoch this voter ever granted


@dataclass
class Grant:
    holder: str
    epoch: int
    expires: float  # the granting voter's monotonic clock


class LeaseBook:
    """One voter's promises: at most one unexpired holder at any time (pure)."""

    def __init__(self) -> None:
        self.grant: Grant | None = None
        self.max_epoch = 0

    def holder(self, now: float) -> Grant | None:
        g = self.grant
        return g if g is not None and g.expires > now else None

    def request(self, candidate: str, epoch: int, duration: float, now: float) -> LeaseAnswer:
        """Grant or refuse; the answer always tells the current holder and epochs."""
        current = self.holder(now)
        ok = (
            isinstance(candidate, str)
            and bool(candidate)
            and isinstance(epoch, int)
            and 0 < duration <= 3600
            and (current is None or (current.holder == candidate and epoch >= current.epoch))
            and epoch >= self.max_epoch
        )
        if ok:
            self.grant = Grant(candidate, epoch, now + duration)
            self.max_epoch = max(self.max_epoch, epoch)
        shown = self.holder(now)
        return {
            "granted": ok,
            "holder": shown.holder if shown else None,
            "epoch": shown.epoch if shown else None,
            "max_epoch": self.max_epoch,
        }


def raft_successor_wait(raft_max_timeout: float) -> float:
    """How long a stopping Bully leader leads on for a Raft quorum to elect (pure).

    The quorum may have formed a moment ago: in a host-by-host switch the voter
    restarted just before the Bully leader is often the one that makes the Raft
    majority.  A freshly started Raft voter refuses pre-votes for two maximum
    election timeouts (so a restart cannot depose a live leader), then the
    election timer fires within one more; a little slack covers the pre-vote
    round and the yield request.  Stopping sooner left nobody leading until
    the election (up to 2 s in the rollout test, with 2.5 s here).
    """
    return 3 * raft_max_timeout + 0.5


# s a Bully leader that stops leads on while a Raft quorum elects its leader (which then
# asks it to yield), for the default Raft timeouts; the coordinator derives it from its own
RAFT_SUCCESSOR_WAIT = raft_successor_wait(1.6)


class BullyElection:
    """The election loop of one voter, over the voters' status servers."""

    def __init__(
        self,
        node_id: str,
        voters: list[Voter],
        *,
        lease: float,
        token: str,
        clock: Callable[[], float] = time.monotonic,
        raft_successor_wait: float = RAFT_SUCCESSOR_WAIT,
    ) -> None:
        self.node_id = node_id
        self.voters = rank(voters)
        self.raft_successor_wait = raft_successor_wait
        self.me = next(v for v in voters if v.name == node_id)
        self.lease = lease
        self.period = max(0.05, lease / 4)
        self.token = token
        self.clock = clock
        self.book = LeaseBook()
        self.epoch = 0
        self._lease_until = 0.0  # while leader: our lease ends here (our clock)
        self._leader_name: str | None = None
        self._deferred_since: float | None = None
        self._quiet_until = 0.0  # after losing to a live holder: no campaign before this
        # holders that gave their lease back to us (name -> when): losing a campaign to
        # one of them is a race with its release reaching the other voters, not a
        # reason to stay quiet for a whole lease
        self._released: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.on_change: list[Callable[[bool], None]] = []
        self.ping_extra: Callable[[], dict[str, object]] = dict  # the ledger adds its version
        # the highest term our ledger copy holds: epochs never go below it, so a lease
        # after a Raft era outranks every Raft fence (consensus.handover)
        self.floor: Callable[[], int] = lambda: 0
        self.stopping = False
        self._wake: asyncio.Event | None = None

    # --- Leadership --------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._lease_until > self.clock()

    def leader(self) -> str | None:
        if self.is_leader():
            return self.node_id
        held = self.book.holder(self.clock())
        return held.holder if held else self._leader_name

    def term(self) -> int:
        return max(self.epoch, self.book.max_epoch, self.floor())

    def fence_token(self) -> str:
        return f"{self.term()}:{self.leader() or '-'}"

    def granted_to(self) -> str | None:
        """The other voter this voter's live grant backs (None: none, or ourselves)."""
        held = self.book.holder(self.clock())
        return held.holder if held is not None and held.holder != self.node_id else None

    def leader_url(self) -> str | None:
        name = self.leader()
        voter = next((v for v in self.voters if v.name == name), None)
        return voter.status_url if voter else None

    # --- routes -----------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        async def post_lease(request: web.Request) -> web.Response:
            body = await read_json_object(request)
            candidate, epoch = body.get("candidate"), body.get("epoch")
            duration = body.get("duration", self.lease)
            if not isinstance(candidate, str) or not candidate:
                return web.json_response(
                    {"error": "field 'candidate': expected a name"}, status=400
                )
            if isinstance(epoch, bool) or not isinstance(epoch, int):
                return web.json_response(
                    {"error": "field 'epoch': expected an integer"}, status=400
                )
            if isinstance(duration, bool) or not isinstance(duration, (int, float)):
                return web.json_response(
                    {"error": "field 'duration': expected seconds"}, status=400
                )
            self.book.max_epoch = max(self.book.max_epoch, self.floor())
            answer = self.book.request(candidate, epoch, float(duration), self.clock())
            if answer["granted"] and candidate != self.node_id:
                self._step_down_for(candidate)
            return web.json_response(answer)

        async def get_ping(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "node": self.node_id,
                    "priority": self.me.priority,
                    "is_leader": self.is_leader(),
                    "leader": self.leader(),
                    "epoch": self.term(),
                    "backend": "bully",
                    "candidate": not self.stopping,
                    "holder": self.granted_to(),
                    **self.ping_extra(),
                }
            )

        async def post_release(request: web.Request) -> web.Response:
            body = await read_json_object(request)
            holder = body.get("holder")
            if not isinstance(holder, str) or not holder:
                return web.json_response({"error": "field 'holder': expected a name"}, status=400)
            return web.json_response({"released": self.release_from(holder)})

        return [
            web.post("/consensus/bully/lease", post_lease),
            web.get("/consensus/bully/ping", get_ping),
            web.post("/consensus/bully/release", post_release),
        ]

    # --- hand-over: releases and yields ----------------------------------------------------

    def release_from(self, holder: str) -> bool:
        """``holder`` gave its lease back (it stops or yields): forget our grant to it
        and campaign at once instead of waiting for the grant to expire."""
        released = self.book.grant is not None and self.book.grant.holder == holder
        if released:
            self.book.grant = None
        if self._leader_name == holder:
            self._leader_name = None
        self._released[holder] = self.clock()
        self._quiet_until = 0.0
        self._deferred_since = None
        if self._wake is not None:
            self._wake.set()
        return released

    async def release_everywhere(self, timeout: float = 0.5) -> None:
        """Give our lease back at every voter (best effort, bounded)."""
        if self.book.grant is not None and self.book.grant.holder == self.node_id:
            self.book.grant = None
        if self._session is None or self._session.closed:
            return
        others = [v for v in self.voters if v.name != self.node_id]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        self._call(v, "POST", "/consensus/bully/release", {"holder": self.node_id})
                        for v in others
                    )
                ),
                timeout,
            )

    async def yield_to(self, leader: str, term: int) -> None:
        """Step down for a Raft quorum's leader (whose term outranks ours) and give
        the lease back, so it can lead at once; then follow it."""
        log.warning("bully: %s yields to %s (term %d)", self.node_id, leader, term)
        self._set_leader(False)
        self._leader_name = leader
        self.epoch = max(self.epoch, term)
        self._quiet_until = self.clock() + self.lease
        await asyncio.sleep(SETTLE)  # our /status says so before the Raft leader leads
        await self.release_everywhere()

    def _step_down_for(self, other: str) -> None:
        if self._lease_until:
            log.info("bully: %s granted a lease to %s; stepping down", self.node_id, other)
        self._set_leader(False)
        self._leader_name = other

    def _set_leader(self, leading: bool, until: float = 0.0) -> None:
        was = self.is_leader()
        self._lease_until = until if leading else 0.0
        if leading:
            self._leader_name = self.node_id
        elif self._leader_name == self.node_id:
            self._leader_name = None  # never point followers (or ourselves) at a lapsed lease
        if was != leading:
            for cb in list(self.on_change):
                try:
                    cb(leading)
                except Exception:
                    log.exception("bully leadership callback failed")

    # --- the loop -------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=min(self.period, 1.0))
        )
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="bully-election")

    async def stop(self) -> None:
        self.stopping = True  # pings now say we are no candidate: nobody defers to us
        if self.is_leader():
            await self._await_raft_successor(self.raft_successor_wait)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.is_leader():
            self._set_leader(False)
            await asyncio.sleep(SETTLE)  # our /status says so before a successor leads
        # a restart hands over now, not a lease later (also after a yield or a lapsed
        # lease: grants to us may still be live at the voters)
        await self.release_everywhere()
        if self._session is not None:
            await self._session.close()
        self._set_leader(False)

    async def _await_raft_successor(self, limit: float) -> None:
        """Stopping as leader while a majority of voters run Raft (a host-by-host switch
        to Raft): lead on (renewing) until their leader asks us to yield, at most
        ``limit`` s, rather than leave nobody leading until they have elected one."""
        if self._session is None or self._session.closed:
            return
        others = [v for v in self.voters if v.name != self.node_id]
        deadline = self.clock() + limit
        while self.is_leader() and self.clock() < deadline:
            answers = await asyncio.gather(
                *(self._call(v, "GET", "/consensus/bully/ping") for v in others)
            )
            raft = sum(1 for a in answers if a and a.get("backend") == "raft")
            if raft <= len(self.voters) // 2:
                return  # no Raft quorum to hand over to: give the lease back now
            await asyncio.sleep(0.1)

    async def _run(self) -> None:
        while True:
            started = self.clock()
            try:
                await self.step()
            except Exception:  # one bad round must not end the election loop
                log.exception("bully round failed")
            # the leader renews every lease/4; the others look often, so that a lost
            # Raft quorum or a released lease is taken over within a fraction of a second
            period = self.period if self.is_leader() else min(self.period, FOLLOWER_PERIOD)
            wait = max(0.0, period - (self.clock() - started))
            if self._wake is None:
                await asyncio.sleep(wait)
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    async def step(self) -> None:
        now = self.clock()
        if self._lease_until and now >= self._lease_until:
            log.warning("bully: %s lease expired without a majority; stepping down", self.node_id)
            self._set_leader(False)
        if self.is_leader():
            await self._campaign(self.epoch)
            return
        held = self.book.holder(now)
        if held is not None and held.holder != self.node_id:
            self._leader_name = held.holder
            self._deferred_since = None
            return
        if now < self._quiet_until:
            return
        higher_alive, raft_leader, raft_term = await self._survey()
        if raft_leader is not None:  # a Raft quorum leads: follow it, never compete
            self._leader_name = raft_leader
            self.epoch = max(self.epoch, raft_term)
            self._deferred_since = None
            return
        if higher_alive:
            if self._deferred_since is None:
                self._deferred_since = now
            if now - self._deferred_since < 2 * self.lease:
                return  # let the higher-ranked voter win; campaign anyway if it never does
        await self._campaign(self.term() + 1)

    async def _survey(self) -> tuple[bool, str | None, int]:
        """Ping every other voter: is a higher-ranked Bully candidate alive, and does a
        Raft quorum lead (a voter on Raft that knows its leader; with its term)?"""
        others = [v for v in self.voters if v.name != self.node_id]
        answers = await asyncio.gather(
            *(self._call(v, "GET", "/consensus/bully/ping") for v in others)
        )
        higher = {v.name for v in self.voters[: self.voters.index(self.me)]}
        alive = False
        raft_leader, raft_term = None, 0
        for v, a in zip(others, answers, strict=True):
            if a is None:
                continue
            if a.get("backend", "bully") == "raft":
                leader, term = a.get("raft_leader"), a.get("epoch")
                if isinstance(leader, str) and isinstance(term, int) and term >= raft_term:
                    raft_leader, raft_term = leader, term
            elif v.name in higher and a.get("candidate", True):
                alive = True
        return alive, raft_leader, raft_term

    async def _campaign(self, epoch: int) -> None:
        asked_at = self.clock()
        body = {"candidate": self.node_id, "epoch": epoch, "duration": self.lease}
        others = [v for v in self.voters if v.name != self.node_id]
        prev_max = self.book.max_epoch
        mine = self.book.request(self.node_id, epoch, self.lease, asked_at)
        answers = await asyncio.gather(
            *(self._call(v, "POST", "/consensus/bully/lease", body) for v in others)
        )
        grants = int(mine["granted"]) + sum(1 for a in answers if a and a.get("granted"))
        # epochs others granted (not our own bid: a cut-off voter must not inflate its epoch)
        seen = [prev_max, *(a.get("max_epoch", 0) for a in answers if a)]
        self.epoch = max(self.epoch, *(e for e in seen if isinstance(e, int)))
        if grants > len(self.voters) // 2:
            self.epoch = epoch
            # Granters count from when they heard us, later than asked_at: ours ends first.
            self._set_leader(True, asked_at + self.lease * 0.9)
            self._deferred_since = None
        elif self.is_leader() and self.clock() >= self._lease_until:
            self._set_leader(False)
        if not self.is_leader():
            # Lost: take back the vote we gave ourselves (and the epoch it raised), so
            # we can grant the real leader's renewals.
            if self.book.grant is not None and self.book.grant.holder == self.node_id:
                self.book.grant = None
                self.book.max_epoch = prev_max
            holders = [h for a in answers if a and isinstance(h := a.get("holder"), str) and h]
            others_hold = [h for h in holders if h != self.node_id]
            self._leader_name = others_hold[0] if others_hold else None
            # someone holds a majority lease: follow it, stop campaigning; unless it
            # has just given its lease back (its release has not reached everyone
            # yet): then the next round campaigns again
            if others_hold and not self._just_released(others_hold[0]):
                self._quiet_until = self.clock() + self.lease

    def _just_released(self, holder: object) -> bool:
        at = self._released.get(holder) if isinstance(holder, str) else None
        return at is not None and self.clock() - at < self.lease

    async def _call(
        self, voter: Voter, method: str, path: str, body: JSONMapping | None = None
    ) -> JSONObject | None:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self._session.request(
                method, voter.status_url + path, json=body, headers=headers
            ) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json()
                return data if isinstance(data, dict) else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None


MAX_BACKLOG = 4  # pushes in flight to one follower before it is skipped
FOLLOWER_PERIOD = 0.25  # s between a non-leader's rounds (at most; lease/4 if shorter)
# s a leader that steps down for a hand-over waits before its successor may lead: the
# status server rebuilds /status at least every 0.25 s, so nobody sees two leaders
SETTLE = 0.4


class BullyLedger(Ledger):
    """The ledger in Bully mode: SQLite on the leader, replicated to the followers.

    A write is applied on the leader, then pushed to every follower with its
    operation number and the leader's epoch; it succeeds once a majority of the
    voters (the leader included) hold it.  Followers refuse pushes from an
    epoch older than the newest lease they granted, so a deposed leader's
    writes fail.  The first push of a new epoch makes a follower take a full
    copy from the leader (which also drops any unconfirmed tail of a deposed
    leader).  A new leader starts from the newest copy among the voters it can
    reach, newest by (term of the last write, operation number).
    """

    forwards_over_http = True

    def __init__(
        self,
        election: BullyElection,
        state_dir: str | Path,
        *,
        token: str,
        op_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        self.node_id = election.node_id
        self.election = election
        self.op_timeout = op_timeout
        self.token = token
        self.store = SqliteStore(Path(state_dir) / "bully" / f"{election.node_id}.sqlite")
        self._sync_task: asyncio.Task[None] | None = None
        self._handover = threading.Event()
        self._handover.set()
        self._write_lock = threading.Lock()
        self._synced_epoch = -1  # the leader epoch whose full copy we hold
        self._pull_lock = asyncio.Lock()
        self._others = [v for v in election.voters if v.name != election.node_id]
        # one pusher per follower, so a follower that hangs cannot delay the others;
        # a follower with a backlog is skipped (it re-syncs by a full copy later)
        self._pushers = {
            v.name: ThreadPoolExecutor(1, thread_name_prefix=f"bully-push-{v.name}")
            for v in self._others
        }
        self._backlog = dict.fromkeys(self._pushers, 0)
        self._backlog_lock = threading.Lock()
        election.on_change.append(self._on_leadership)
        election.ping_extra = lambda: {"version": self.store.seq, "store": self.store_key()}
        election.floor = self.store_term

    def store_term(self) -> int:
        with self.store.reading() as state:
            return int(state.get("term", 0))

    def store_key(self) -> list[int]:
        """(term of the last write, operation number): which copy is newest."""
        return [self.store.term(), self.store.seq]

    def _on_leadership(self, leading: bool) -> None:
        if leading:
            self._handover.clear()  # writes wait until the hand-over pull is done

    # --- writes ------------------------------------------------------------------------------

    def propose(self, op: dict[str, object], timeout: float | None = None) -> sm.Result:
        wait = self.op_timeout if timeout is None else timeout
        if self.election.is_leader():
            if not self._handover.wait(wait):
                return {"ok": False, "reason": "taking over the ledger; try again"}
            with self._write_lock:  # pushes leave in operation order
                if not self.election.is_leader():
                    return {"ok": False, "reason": "lost the lease"}
                result = self.store.apply(op)
                if not result["ok"]:
                    return result  # refused: nothing to replicate
                acks = 1 + self._replicate(op, self.store.seq, wait)
            need = len(self.election.voters) // 2 + 1
            if acks < need:
                return {
                    "ok": False,
                    "reason": f"applied on the leader but held by {acks} of "
                    f"{len(self.election.voters)} voters (needs {need}): outcome unknown",
                }
            return result
        leader = self.election.leader()
        url = self.election.leader_url()
        if url is None or leader == self.node_id:
            return {"ok": False, "reason": "no leader (no majority of voters)"}
        status, body = http_json(
            url + "/consensus/op", token=self.token, body=op, timeout=wait, forwarded=True
        )
        if status == 200 and isinstance(body, dict) and isinstance(body.get("ok"), bool):
            return dict[str, object](body)
        return {"ok": False, "reason": f"leader at {url} answered {status}: {body}"}

    def _replicate(self, op: dict[str, object], seq: int, timeout: float) -> int:
        """Push to every follower; the number that acknowledged once a majority did
        (or everyone answered, or the timeout passed)."""
        if not self._others:
            return 0
        body = {"op": op, "seq": seq, "epoch": self.election.term(), "leader": self.node_id}
        pending = set()
        for v in self._others:
            with self._backlog_lock:
                if self._backlog[v.name] >= MAX_BACKLOG:
                    continue
                self._backlog[v.name] += 1
            future = self._pushers[v.name].submit(
                http_json,
                v.status_url + "/consensus/bully/replicate",
                token=self.token,
                body=body,
                timeout=timeout,
            )
            future.add_done_callback(partial(self._pushed, v.name))
            pending.add(future)
        need = len(self.election.voters) // 2  # besides ourselves
        acks = 0
        deadline = time.monotonic() + timeout
        while pending and acks < need:
            done, pending = wait_futures(
                pending, timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_COMPLETED
            )
            if not done:
                break
            for f in done:
                status, answer = f.result()
                if status == 200 and isinstance(answer, dict) and answer.get("ack") is True:
                    acks += 1
        return acks

    def _pushed(self, name: str, _future: object = None) -> None:
        with self._backlog_lock:
            self._backlog[name] -= 1

    # --- Ledger --------------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        with self.store.reading() as state:
            yield state

    def is_leader(self) -> bool:
        return self.election.is_leader()

    def leader(self) -> str | None:
        return self.election.leader()

    def term(self) -> int:
        return self.election.term()

    def fence_token(self) -> str:
        return self.election.fence_token()

    def version(self) -> int:
        return self.store.seq

    # --- the follower side ------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        async def post_replicate(request: web.Request) -> web.Response:
            body = await read_json_object(request)
            fields = replicate_fields(body)
            if isinstance(fields, web.Response):
                return fields
            op, seq, epoch = fields
            if epoch < self.election.term() or self.election.is_leader():
                return web.json_response({"ack": False, "reason": "stale epoch"})
            if epoch != self._synced_epoch:
                await self._pull_from_leader(body.get("leader"))
            outcome = "gap"
            if epoch == self._synced_epoch:
                outcome = await asyncio.to_thread(self.store.apply_at, op, seq)
                if outcome == "gap":  # we missed one: catch up with a full copy, then retry
                    await self._pull_from_leader(body.get("leader"))
                    outcome = await asyncio.to_thread(self.store.apply_at, op, seq)
            return web.json_response({"ack": outcome != "gap", "seq": self.store.seq})

        async def post_yield(request: web.Request) -> web.Response:
            body = await read_json_object(request)
            to, term = body.get("to"), body.get("term")
            if not isinstance(to, str) or not to:
                return web.json_response({"error": "field 'to': expected a name"}, status=400)
            if isinstance(term, bool) or not isinstance(term, int):
                return web.json_response({"error": "field 'term': expected an integer"}, status=400)
            return web.json_response(await self.yield_to(to, term))

        return [
            web.post("/consensus/bully/replicate", post_replicate),
            web.post("/consensus/bully/yield", post_yield),
            store_route(lambda: self.store, self.token),
        ]

    async def yield_to(self, leader: str, term: int) -> JSONObject:
        """A Raft quorum's leader takes over: stop writing, step down, hand it our
        copy (the one a majority acknowledged, plus at most an unconfirmed tail)."""
        was_leader = self.election.is_leader()
        # wait out a write in flight: after this no write of ours can succeed
        await asyncio.to_thread(self._write_lock.acquire)
        try:
            if was_leader:
                self.election._set_leader(False)
        finally:
            self._write_lock.release()
        if was_leader:
            await self.election.yield_to(leader, term)
        with self.store.reading() as state:
            body = json.loads(json.dumps(state))
            version = self.store.seq
        return {"yielded": was_leader, "version": version, "state": body}

    async def _fetch(self, voter: Voter) -> LedgerCopy | None:
        status, body = await asyncio.to_thread(
            http_json, voter.status_url + "/consensus/ledger", token=self.token, timeout=1.0
        )
        if status != 200 or not isinstance(body, dict):
            return None
        state, version = body.get("state"), body.get("version")
        if not sm.is_state(state) or not isinstance(version, int):
            return None
        return {"state": state, "version": version, "term": body.get("term")}

    async def _pull_from_leader(self, name: object) -> None:
        """Take the leader's full copy (the leader is the truth for its epoch)."""
        voter = next((v for v in self._others if v.name == name), None)
        if voter is None:
            return
        async with self._pull_lock:
            body = await self._fetch(voter)
            term = None if body is None else body["term"]
            if body is None or not isinstance(term, int):
                return
            if term < self.election.term():
                return  # not the leader we follow any more
            # a new epoch replaces whatever we hold; within one, only move forward
            if term != self._synced_epoch or body["version"] > self.store.seq:
                await asyncio.to_thread(self.store.install, body["state"], body["version"])
            self._synced_epoch = term
            # following a Raft leader: our next lease must outrank its term
            self.election.epoch = max(self.election.epoch, term)

    async def _behind(self, leader: str) -> bool:
        """True when the leader holds operations we missed (a skipped or lost push)."""
        voter = next((v for v in self._others if v.name == leader), None)
        if voter is None:
            return False
        status, body = await asyncio.to_thread(
            http_json, voter.status_url + "/consensus/bully/ping", token=self.token, timeout=0.5
        )
        version = body.get("version") if status == 200 and isinstance(body, dict) else None
        return isinstance(version, int) and version > self.store.seq

    async def _take_over(self) -> None:
        """New leader: start from the newest copy among the voters that answer."""
        bodies = await asyncio.gather(*(self._fetch(v) for v in self._others))
        with self.store.reading() as mine:
            best_key, best = (mine.get("term", 0), self.store.seq), None
        for body in bodies:
            if body is None:
                continue
            term = body["state"].get("term", 0)
            key = (term if isinstance(term, int) else 0, body["version"])
            if key > best_key:
                best_key, best = key, body
        if best is not None:
            await asyncio.to_thread(self.store.install, best["state"], best["version"])
        if self.store_term() > self.election.epoch:
            # the newest copy comes from a later era (a Raft term above our epoch):
            # our writes would be refused as stale; campaign again above it
            log.warning(
                "bully: %s took a copy of term %d above its epoch %d; re-electing",
                self.node_id,
                self.store_term(),
                self.election.epoch,
            )
            self.election._set_leader(False)
        self._synced_epoch = self.election.term()

    async def start(self) -> None:
        self._sync_task = asyncio.create_task(self._sync_loop(), name="bully-ledger-sync")

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        for pusher in self._pushers.values():
            pusher.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def _sync_loop(self) -> None:
        """Hand-over on the new leader; followers re-sync whenever the epoch moved."""
        while True:
            try:
                if self.election.is_leader():
                    if not self._handover.is_set():
                        await self._take_over()
                        self._handover.set()
                else:
                    leader = self.election.leader()
                    if leader is not None and (
                        self._synced_epoch != self.election.term() or await self._behind(leader)
                    ):
                        await self._pull_from_leader(leader)
            except Exception:
                log.exception("bully ledger sync failed")
            await asyncio.sleep(self.election.period)
