# mypy: disallow-any-explicit
"""Switching consensus backends host by host: one leader at a time, one ledger.

A rollout to Raft (or a rollback to Bully) restarts the voters one at a time,
so for a while some run Bully and some Raft.  Left alone, the two Raft voters
elect a leader while the Bully leader still holds its lease (two leaders, two
ledgers), or nobody leads until a lease runs out.  The rules here make the
two backends one cluster during the switch:

* **Every voter answers the Bully routes.**  A Raft voter grants Bully leases
  only while it knows no Raft leader, so a Bully lease and a Raft quorum never
  hold a majority at once (any two majorities share a voter).
* **Raft refuses to lead while Bully leads.**  Every Raft voter pings the
  voters each ``poll`` seconds; it counts as leader only when its last round
  saw no Bully leader and no live Bully grant anywhere, and when a majority
  answered (once open in a Raft term, a round that hears too few does not close
  it: that is load, not a Bully leader).  Until then it forwards writes to the
  Bully leader.
* **Bully yields to a Raft quorum.**  A Raft leader that sees a Bully leader
  asks it to yield (``POST /consensus/bully/yield``): the Bully leader stops
  writing, gives its lease back at every voter and hands over its ledger, which
  the Raft leader adopts (``adopt_state.v1``) before it leads.  With no Bully
  leader left (all restarted at once) it adopts the newest Bully copy a voter
  holds (``GET /consensus/bully/store``) if that is newer than Raft's.
* **Bully voters never compete with a Raft quorum** (``BullyElection._survey``)
  and take over within a fraction of a second once it is gone; a Bully leader
  that stops gives its lease back, so its successor need not wait for it.
* **Fences are ordered across backends.**  Raft's term, as the ledger and the
  fences see it, is ``term_base + raft term``; adopting a Bully ledger of term
  E sets ``term_base`` to E + 1.  A Bully epoch is never below the term of the
  ledger copy its voter holds, nor below a Raft term it was told about, so a
  lease after a Raft era outranks every Raft fence.
* **Nothing is lost going back.**  Each Raft voter mirrors its replica into its
  Bully SQLite file (every ``mirror_every`` s and when it stops), and Raft
  voters serve their replica at ``GET /consensus/ledger``; a new Bully leader
  starts from the newest copy by (term, operation number).

:func:`gate` is the pure decision; :class:`HandoverRaft` wraps the Raft ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from aiohttp import web

from ringrift_fleet.consensus import ledger as sm
from ringrift_fleet.consensus import state_json
from ringrift_fleet.consensus.api import Ledger
from ringrift_fleet.consensus.bully import (
    SETTLE,
    LeaseAnswer,
    LeaseBook,
    replicate_fields,
    store_route,
)
from ringrift_fleet.consensus.remote import http_json
from ringrift_fleet.consensus.sqlite_ledger import SqliteStore
from ringrift_fleet.consensus.voters import Voter
from ringrift_fleet.http_input import bearer_ok, read_json_object
from ringrift_fleet.jsontypes import JSONMapping, JSONObject

log = logging.getLogger(__name__)

POLL = 0.25  # s between ping rounds
# a ping's timeout: the first, and after a round a majority answered; a round with
# too few answers doubles it up to the most (a voter whose event loop is busy
# answers late; a dead one never does, and costs each round its timeout)
PING_TIMEOUT = 0.5
PING_TIMEOUT_MAX = 2.0
MIRROR_EVERY = 5.0  # s between copies of the Raft replica into the Bully file
# ... and at most this share of the time spent copying: a 10,000-job replica takes
# a good part of a second to copy on a loaded host, and the copy is for a rollback
# (a stopping voter writes a last one), not worth a core
MIRROR_SHARE = 0.02


@dataclass
class Round:
    """What one ping round of the voters found (pings by voter name; ours included)."""

    pings: dict[str, JSONMapping] = field(default_factory=dict)
    voters: int = 1

    def bully_leader(self) -> tuple[str, int] | None:
        for name, p in sorted(self.pings.items()):
            if p.get("backend", "bully") == "bully" and p.get("is_leader") is True:
                epoch = p.get("epoch")
                return name, epoch if isinstance(epoch, int) else 0
        return None

    def holders(self) -> set[str]:
        return {h for p in self.pings.values() if isinstance(h := p.get("holder"), str) and h}

    def newest_store(self) -> tuple[int, int, str] | None:
        """(term, version, voter) of the newest Bully copy any voter holds."""
        best: tuple[int, int, str] | None = None
        for name, p in self.pings.items():
            key = p.get("store")
            if (
                isinstance(key, list)
                and len(key) == 2
                and all(isinstance(x, int) for x in key)
                and (best is None or (key[0], key[1]) > best[:2])
            ):
                best = (key[0], key[1], name)
        return best


def gate(r: Round, raft_state_term: int, *, leading: bool = False) -> str:
    """What a Raft leader with a quorum does after round ``r`` (pure):

    ``"yield"`` (ask the Bully leader to hand over), ``"wait"`` (a Bully grant is
    still live somewhere, or too few voters answered), ``"adopt"`` (a Bully copy
    newer than Raft's exists: take it first) or ``"lead"``.

    ``leading``: a round of this same Raft term already opened the gate.  Then too
    few answers is a loaded host, not a Bully leader: while we keep a Raft quorum a
    majority names us its leader, and a voter that names a Raft leader grants no
    Bully lease (a follower names us until it stands, two election timeouts after
    it last heard us; we step down after 1.5 without a majority).  So only a Bully
    leader or a live grant that a round actually sees closes the gate.
    Closing it on silence made a leader under load stop scheduling and drop out
    of /status for rounds at a time while Raft never changed.
    """
    if r.bully_leader() is not None:
        return "yield"
    if r.holders():
        return "wait"
    if leading:
        return "lead"
    if len(r.pings) <= r.voters // 2:
        return "wait"
    newest = r.newest_store()
    if newest is not None and newest[0] > raft_state_term:
        return "adopt"
    return "lead"


@runtime_checkable
class RaftReplica(Protocol):
    """What the hand-over needs of the Raft ledger it wraps (``raft_state.RaftLedger``)."""

    node_id: str
    op_timeout: float

    def propose(self, op: dict[str, object], timeout: float | None = None) -> sm.Result: ...

    def propose_many(
        self, ops: Sequence[dict[str, object]], timeout: float | None = None
    ) -> list[sm.Result]: ...

    def reading(self) -> AbstractContextManager[sm.State]: ...

    def is_leader(self) -> bool: ...

    def leader(self) -> str | None: ...

    def term(self) -> int: ...

    def version(self) -> object: ...  # the last applied log index (an int)

    def has_quorum(self) -> bool: ...

    def raft_status(self) -> dict[str, object]: ...

    def close(self) -> None: ...


class HandoverRaft(Ledger):
    """The Raft ledger, leading only when no Bully leader does (see module doc)."""

    def __init__(
        self,
        raft: Ledger,
        voters: list[Voter],
        *,
        state_dir: str | Path,
        token: str,
        lease: float,
        poll: float = POLL,
        mirror_every: float = MIRROR_EVERY,
    ) -> None:
        super().__init__()
        if not isinstance(raft, RaftReplica):
            raise TypeError(f"HandoverRaft wraps a Raft ledger, not {type(raft).__name__}")
        self.raft = raft
        self.node_id: str = raft.node_id
        self.op_timeout = raft.op_timeout
        self.voters = list(voters)
        self.token = token
        self.lease = lease
        self.poll = poll
        self.mirror_every = mirror_every
        self.book = LeaseBook()
        self.store: SqliteStore | None = None
        try:
            self.store = SqliteStore(Path(state_dir) / "bully" / f"{self.node_id}.sqlite")
        except Exception as exc:  # a hand-over source, not a requirement
            log.warning("cannot open the Bully copy (%s): no hand-over from it", exc)
        self.last = Round(voters=len(self.voters))
        self.rounds = 0
        self._open = False  # we may lead: the last round cleared it
        self._open_term = -1  # the Raft term in which a round opened the gate
        self.ping_timeout = PING_TIMEOUT  # grows while too few voters answer in time
        self._followable = False  # the Raft leader's last ping said it leads
        self._bully: tuple[str, int] | None = None  # a Bully leader seen in the last round
        self._mirrored: tuple[int, object] | None = None
        self._mirror_wait = mirror_every  # s until the next mirror (grows with its cost)
        self._led_at = -SETTLE  # when we last were the leader (monotonic)
        self._term_base = 0
        self._task: asyncio.Task[None] | None = None
        self._synced_epoch = -1  # the Bully leader epoch whose full copy our store holds
        self._pull_lock = asyncio.Lock()
        self.handovers: list[dict[str, object]] = []  # for /status: what was adopted, when

    # --- Raft terms above every Bully epoch -------------------------------------------------

    def _base(self) -> int:
        """Where Raft terms start (replicated; cached, because term() is called
        while a reader holds the replica's lock)."""
        return self._term_base

    def _refresh_base(self) -> None:
        with self.raft.reading() as state:
            self._term_base = int(state.get("term_base", 0))

    def raft_term(self) -> int:
        return self._base() + int(self.raft.term())

    def _state_term(self) -> int:
        with self.raft.reading() as state:
            return int(state.get("term", 0))

    def raft_leader(self) -> str | None:
        """The Raft leader a quorum follows, as far as we know (None: no quorum).

        A leader that just stopped leading still names itself for SETTLE seconds,
        so no Bully voter leads while our /status may still say we do."""
        if self.raft.is_leader() and self.raft.has_quorum():
            return self.node_id
        if time.monotonic() - self._led_at < SETTLE:
            return self.node_id
        if self.raft.is_leader():
            return None
        leader: str | None = self.raft.leader()
        return leader

    # --- Ledger -----------------------------------------------------------------------------

    def propose(self, op: dict[str, object], timeout: float | None = None) -> sm.Result:
        wait = self.op_timeout if timeout is None else timeout
        bully = self._bully
        if bully is not None:  # the Bully leader still leads: it takes the writes
            url = self._url(bully[0])
            if url is None:
                return {"ok": False, "reason": f"Bully leader {bully[0]} is not a voter"}
            status, body = http_json(
                url + "/consensus/op",
                token=self.token,
                body={**op, "term": 0},  # its own epoch, not our Raft term
                timeout=wait,
                forwarded=True,
            )
            if status == 200 and isinstance(body, dict) and isinstance(body.get("ok"), bool):
                return dict[str, object](body)
            return {"ok": False, "reason": f"Bully leader at {url} answered {status}: {body}"}
        if not self._wait_open(wait):
            return {"ok": False, "reason": "consensus hand-over in progress; try again"}
        result: sm.Result = self.raft.propose(op, timeout)
        return result

    def propose_many(
        self, ops: Sequence[dict[str, object]], timeout: float | None = None
    ) -> list[sm.Result]:
        if self._bully is not None or not ops:  # forwarded one by one (its own epoch)
            return super().propose_many(ops, timeout)
        if not self._wait_open(self.op_timeout if timeout is None else timeout):
            return [{"ok": False, "reason": "consensus hand-over in progress; try again"}] * len(
                ops
            )
        return self.raft.propose_many(ops, timeout)

    def _gate_open(self) -> bool:
        return self._open if self.raft.is_leader() else self._followable

    def _wait_open(self, wait: float) -> bool:
        """Whether writes may go to Raft, waiting up to ``wait`` s for the next
        rounds to open the gate (a write right after an election would otherwise
        fail while a follower's round has not yet seen the new leader lead).
        On the event loop's own thread it does not wait: the rounds run there."""
        if self._gate_open():
            return True
        try:
            asyncio.get_running_loop()
            return False
        except RuntimeError:
            pass
        deadline = time.monotonic() + min(wait, 4 * self.poll + 1.0)
        while time.monotonic() < deadline and self._bully is None:
            time.sleep(min(0.05, self.poll))
            if self._gate_open():
                return True
        return False

    @contextmanager
    def reading(self) -> Iterator[sm.State]:
        with self.raft.reading() as state:
            yield state

    def is_leader(self) -> bool:
        return bool(self._open and self.raft.is_leader() and self.raft.has_quorum())

    def leader(self) -> str | None:
        if self._bully is not None:
            return self._bully[0]
        if self.raft.is_leader():
            return self.node_id if self.is_leader() else None
        leader: str | None = self.raft.leader()
        return leader

    def term(self) -> int:
        if self._bully is not None:
            return self._bully[1]
        return self.raft_term()

    def version(self) -> object:
        return self.raft.version()

    def history(self) -> str | None:
        return None if self._bully is not None else self.raft.history()

    def has_quorum(self) -> bool:
        return bool(self.raft.has_quorum())

    def raft_status(self) -> dict[str, object]:
        out = self.raft.raft_status()
        out.update(
            term_base=self._base(),
            handover={
                "may_lead": self._open,
                "bully_leader": self._bully[0] if self._bully else None,
                "rounds": self.rounds,
                "adopted": self.handovers[-5:],
            },
        )
        return out

    def close(self) -> None:
        self._mirror(force=True)
        self.raft.close()
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()

    # --- the rounds ---------------------------------------------------------------------------

    def _url(self, name: str) -> str | None:
        voter = next((v for v in self.voters if v.name == name), None)
        return voter.status_url if voter else None

    def ping_body(self) -> dict[str, object]:
        held = self.book.holder(time.monotonic())
        return {
            "node": self.node_id,
            "backend": "raft",
            "candidate": False,
            "is_leader": self.is_leader(),
            "leader": self.leader(),
            "epoch": self.raft_term(),
            "raft_leader": self.raft_leader(),
            "holder": held.holder if held is not None else None,
            "store": self._store_key(),
            "version": self.raft.version(),
        }

    def _store_key(self) -> list[int] | None:
        if self.store is None:
            return None
        return [self.store.term(), self.store.seq]

    async def run_round(self) -> Round:
        self._refresh_base()
        others = [v for v in self.voters if v.name != self.node_id]
        answers = await asyncio.gather(
            *(
                asyncio.to_thread(
                    http_json,
                    v.status_url + "/consensus/bully/ping",
                    token="",
                    timeout=self.ping_timeout,
                )
                for v in others
            )
        )
        r = Round(voters=len(self.voters))
        r.pings[self.node_id] = self.ping_body()
        for v, (status, body) in zip(others, answers, strict=True):
            if status == 200 and isinstance(body, dict):
                r.pings[v.name] = body
        self.last, self.rounds = r, self.rounds + 1
        if len(r.pings) > r.voters // 2:
            self.ping_timeout = PING_TIMEOUT
        else:
            self.ping_timeout = min(PING_TIMEOUT_MAX, 2 * self.ping_timeout)
        self._bully = r.bully_leader()
        raft_leader = self.raft.leader()
        self._followable = bool(
            raft_leader is not None and r.pings.get(raft_leader, {}).get("is_leader") is True
        )
        if self.raft.is_leader() and self.raft.has_quorum():
            await self._act(r)
        else:
            self._open = False
        return r

    async def _act(self, r: Round) -> None:
        leading = self._open and self._open_term == self.raft_term()
        decision = gate(r, self._state_term(), leading=leading)
        if decision == "yield":
            assert self._bully is not None
            self._open = False
            name = self._bully[0]
            status, body = await asyncio.to_thread(
                http_json,
                f"{self._url(name)}/consensus/bully/yield",
                token=self.token,
                body={"to": self.node_id, "term": self.raft_term()},
                timeout=max(2.0, self.op_timeout + 1.0),
            )
            state = body.get("state") if status == 200 and isinstance(body, dict) else None
            if isinstance(state, dict):
                if await self._adopt(state, f"yield of {name}"):
                    await self._release_grants_of(name)
            else:
                log.warning("handover: %s did not yield (%s %s)", name, status, body)
            return
        if decision == "adopt":
            newest = r.newest_store()
            assert newest is not None
            copied = await self._fetch_store(newest[2])
            if copied is None or not await self._adopt(copied, f"Bully copy of {newest[2]}"):
                self._open = False
                return
        if decision in ("adopt", "lead"):
            if not self._open:
                log.info("handover: %s leads with Raft (term %d)", self.node_id, self.raft_term())
            self._open, self._open_term = True, self.raft_term()
        else:
            self._open = False

    async def _release_grants_of(self, holder: str) -> None:
        """``holder`` yielded to us: its Bully grants at the voters are void.  It gives
        them back itself, but it may be stopping (its session closed): do it for it, so
        the gate does not wait a lease for them to lapse."""
        if self.book.grant is not None and self.book.grant.holder == holder:
            self.book.grant = None
        others = [v for v in self.voters if v.name not in (self.node_id, holder)]
        await asyncio.gather(
            *(
                asyncio.to_thread(
                    http_json,
                    v.status_url + "/consensus/bully/release",
                    token=self.token,
                    body={"holder": holder},
                    timeout=0.5,
                )
                for v in others
            )
        )

    async def _fetch_store(self, name: str) -> JSONMapping | None:
        """Voter ``name``'s Bully copy (its ledger state), or None."""
        if name == self.node_id:
            if self.store is None:
                return None
            with self.store.reading() as state:
                return sm_copy(state)
        status, body = await asyncio.to_thread(
            http_json, f"{self._url(name)}/consensus/bully/store", token=self.token, timeout=2.0
        )
        copied = body.get("state") if status == 200 and isinstance(body, dict) else None
        return copied if isinstance(copied, dict) else None

    async def _adopt(self, state: JSONMapping, source: str) -> bool:
        term = state.get("term", 0) or 0
        if not isinstance(term, (int, float, str)):
            raise TypeError(f"the {source}'s term is not a number: {term!r:.60}")
        other_term = int(term)
        if other_term <= self._state_term():
            return True  # ours is as new: nothing to take
        op = sm.make_op(
            "adopt_state.v1",
            now=self.clock(),
            term=self.raft_term(),
            state=state,
            term_base=other_term + 1,
        )
        result = await asyncio.to_thread(self.raft.propose, op)
        if not result.get("ok"):
            log.warning("handover: adopting the %s failed: %s", source, result.get("reason"))
            return False
        self._refresh_base()
        work = state.get("work")  # a dict: adopt_state refuses anything else
        jobs = len(work) if isinstance(work, dict) else 0
        entry: dict[str, object] = {
            "from": source,
            "term": other_term,
            "jobs": jobs,
            "at": time.time(),
        }
        self.handovers = [*self.handovers, entry][-20:]
        log.warning(
            "handover: %s adopted the %s (term %d, %d jobs); Raft terms now start at %d",
            self.node_id,
            source,
            other_term,
            jobs,
            self._base(),
        )
        return True

    def _mirror(self, force: bool = False) -> None:
        """Copy the Raft replica into the Bully file (for a later rollback), never
        over a newer copy that is still waiting to be adopted."""
        if self.store is None:
            return
        try:
            with self.raft.reading() as state:
                key = (int(state.get("term", 0)), self.raft.version())
                if key == self._mirrored and not force:
                    return
                if key[0] < self.store_term():
                    return
                frozen = state_json.freeze(state)
            text = state_json.encode(frozen)  # the lock let go: the Raft thread applies on
            # kept on disk, not decoded: it is read only on a rollback to Bully
            self.store.install_encoded(text, key[0], key[1] if isinstance(key[1], int) else 0)
            self._mirrored = key
        except Exception as exc:  # the mirror is a convenience for rollbacks
            log.warning("mirroring the Raft ledger into the Bully file failed: %s", exc)

    def store_term(self) -> int:
        if self.store is None:
            return 0
        return self.store.term()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="consensus-handover")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._open = False

    async def _loop(self) -> None:
        mirrored_at = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                await self.run_round()
                if time.monotonic() - mirrored_at >= self._mirror_wait:
                    began = time.monotonic()
                    await asyncio.to_thread(self._mirror)
                    mirrored_at = time.monotonic()
                    self._mirror_wait = max(self.mirror_every, (mirrored_at - began) / MIRROR_SHARE)
            except Exception:  # one bad round must not end the loop
                log.exception("handover round failed")
            # the next round comes at once when our Raft role changes
            was = self.raft.is_leader()
            while time.monotonic() - started < self.poll and self.raft.is_leader() == was:
                self._note_leading()
                await asyncio.sleep(0.02)

    def _note_leading(self) -> None:
        if self.is_leader():
            self._led_at = time.monotonic()

    # --- the Bully routes every voter answers -------------------------------------------------

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
            raft_leader = self.raft_leader()
            self.book.max_epoch = max(self.book.max_epoch, self.raft_term())
            if raft_leader is not None:  # a Raft quorum leads: no Bully lease beside it
                answer: LeaseAnswer = {
                    "granted": False,
                    "holder": None,
                    "epoch": None,
                    "max_epoch": self.book.max_epoch,
                }
            else:
                answer = self.book.request(candidate, epoch, float(duration), time.monotonic())
            return web.json_response({**answer, "raft_leader": raft_leader})

        async def get_ping(request: web.Request) -> web.Response:
            return web.json_response(self.ping_body())

        async def post_release(request: web.Request) -> web.Response:
            body = await read_json_object(request)
            holder = body.get("holder")
            if not isinstance(holder, str) or not holder:
                return web.json_response({"error": "field 'holder': expected a name"}, status=400)
            released = self.book.grant is not None and self.book.grant.holder == holder
            if released:
                self.book.grant = None
            return web.json_response({"released": released})

        async def post_replicate(request: web.Request) -> web.Response:
            if not bearer_ok(request, self.token):
                return web.json_response({"error": "needs Authorization: Bearer"}, status=401)
            body = await read_json_object(request)
            fields = replicate_fields(body)
            if isinstance(fields, web.Response):
                return fields
            op, seq, epoch = fields
            return web.json_response(
                await self.hold_bully_write(op, seq, epoch, body.get("leader"))
            )

        return [
            web.post("/consensus/bully/lease", post_lease),
            web.get("/consensus/bully/ping", get_ping),
            web.post("/consensus/bully/release", post_release),
            web.post("/consensus/bully/replicate", post_replicate),
            store_route(lambda: self.store, self.token),
        ]

    async def hold_bully_write(
        self, op: JSONObject, seq: int, epoch: int, leader: object
    ) -> dict[str, object]:
        """A Bully leader's write, while it still leads a switch to Raft: held in our
        Bully copy like any Bully follower's, so its writes stay on a majority (and
        are in the copy a Raft leader adopts).  Refused once a Raft quorum leads, or
        from an epoch below a lease we granted since."""
        store = self.store
        if store is None or self.raft_leader() is not None or epoch < self.book.max_epoch:
            return {"ack": False, "reason": "stale epoch or a Raft quorum leads"}
        if epoch != self._synced_epoch:
            await self._pull_bully(leader)
        outcome = "gap"
        if epoch == self._synced_epoch:
            outcome = await asyncio.to_thread(store.apply_at, op, seq)
            if outcome == "gap":  # we missed one: catch up with a full copy, then retry
                await self._pull_bully(leader)
                outcome = await asyncio.to_thread(store.apply_at, op, seq)
        return {"ack": outcome != "gap", "seq": store.seq}

    async def _pull_bully(self, leader: object) -> None:
        """The Bully leader's full copy into our store (it is the truth for its epoch)."""
        url = self._url(leader) if isinstance(leader, str) else None
        store = self.store
        if url is None or store is None or leader == self.node_id:
            return
        async with self._pull_lock:
            status, body = await asyncio.to_thread(
                http_json, url + "/consensus/ledger", token=self.token, timeout=1.0
            )
            if status != 200 or not isinstance(body, dict):
                return
            state, version, term = body.get("state"), body.get("version"), body.get("term")
            if not (sm.is_state(state) and isinstance(version, int) and isinstance(term, int)):
                return
            if term < self.book.max_epoch:
                return  # not the leader that holds the newest lease
            if term != self._synced_epoch or version > store.seq:
                await asyncio.to_thread(store.install, state, version)
            self._synced_epoch = term


def sm_copy(state: sm.State) -> sm.State:
    copied: sm.State = json.loads(json.dumps(state, default=str))
    return copied


__all__ = ["MIRROR_EVERY", "POLL", "HandoverRaft", "Round", "gate"]
