# mypy: disallow-any-explicit
"""The three ways a coordinator takes part in consensus, behind one protocol.

A voter runs Raft (:class:`RaftBackend`, the Raft ledger wrapped for the
Bully<->Raft hand-over) or Bully (:class:`BullyBackend`, leases plus a
replicated SQLite ledger); a host that is not a voter runs neither and follows
whoever the voters say leads (:class:`RemoteBackend`).  The coordinator only
chooses one (``hybrid_coordinator.choose_consensus``) and delegates to it: each
backend knows its own routes, background tasks and shutdown order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from aiohttp import web

from ringrift_fleet.consensus.api import Leadership, Ledger
from ringrift_fleet.consensus.bully import RAFT_SUCCESSOR_WAIT, BullyElection, BullyLedger
from ringrift_fleet.consensus.handover import HandoverRaft
from ringrift_fleet.consensus.leader_view import read_leader
from ringrift_fleet.consensus.remote import RemoteLedger
from ringrift_fleet.consensus.voters import Voter

log = logging.getLogger(__name__)

PEER_VIEW_EVERY_S = 0.2  # how stale membership's verdict may be when Raft weighs it


class ConsensusBackend(Protocol):
    """What a coordinator needs from its consensus, whichever it is."""

    @property
    def name(self) -> str:
        """One of raft, bully or remote, as /status reports it."""
        ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def leadership(self) -> Leadership: ...

    def routes(self) -> list[web.RouteDef]:
        """Routes of this backend the :8770 server mounts (beside /consensus/op)."""
        ...

    def watch_peers(self, is_alive: Callable[[str], bool]) -> None:
        """Membership's verdict on a peer (called on the event loop), for consensus
        to weigh beside its own timeouts; before start."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Stop background work and release files; the backend is not used again."""
        ...


@runtime_checkable
class PeerViewSink(Protocol):
    """A ledger that weighs membership's view of the voters (the Raft ledger)."""

    def set_peer_view(self, alive: Mapping[str, bool]) -> None: ...


class RaftBackend:
    """Raft among the voters, leading only while no Bully voter leads (consensus.handover)."""

    name = "raft"

    def __init__(
        self, raft: Ledger, voters: list[Voter], *, state_dir: Path, token: str, lease: float
    ) -> None:
        self.ledger = HandoverRaft(raft, voters, state_dir=state_dir, token=token, lease=lease)
        self.leadership: Leadership = self.ledger
        self._raft = raft
        self._voters = [v.name for v in voters]
        self._is_alive: Callable[[str], bool] | None = None
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> list[web.RouteDef]:
        return self.ledger.routes()

    def watch_peers(self, is_alive: Callable[[str], bool]) -> None:
        self._is_alive = is_alive

    async def start(self) -> None:
        await self.ledger.start()
        if self._is_alive is not None and isinstance(self._raft, PeerViewSink):
            self._task = asyncio.create_task(
                self._publish_peers(self._is_alive, self._raft), name="raft-peer-view"
            )

    async def _publish_peers(self, is_alive: Callable[[str], bool], sink: PeerViewSink) -> None:
        """Copy membership's verdicts for the Raft thread, which must not read
        membership's structures while the event loop changes them."""
        while True:
            try:
                sink.set_peer_view({name: bool(is_alive(name)) for name in self._voters})
            except Exception as exc:  # a membership hiccup must not end the copy
                log.debug("peer view not refreshed: %s", exc)
            await asyncio.sleep(PEER_VIEW_EVERY_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.ledger.stop()
        self.ledger.close()


class BullyBackend:
    """Bully leases among the voters; the leader's SQLite ledger, pushed to the others."""

    name = "bully"

    def __init__(
        self,
        node_id: str,
        voters: list[Voter],
        *,
        state_dir: Path,
        token: str,
        lease: float,
        raft_successor_wait: float = RAFT_SUCCESSOR_WAIT,
    ) -> None:
        self.election = BullyElection(
            node_id, voters, lease=lease, token=token, raft_successor_wait=raft_successor_wait
        )
        self.ledger = BullyLedger(self.election, state_dir, token=token)
        self.leadership: Leadership = self.election

    def routes(self) -> list[web.RouteDef]:
        return self.election.routes() + self.ledger.routes()

    def watch_peers(self, is_alive: Callable[[str], bool]) -> None:
        """Bully's lease alone decides; membership is not consulted."""

    async def start(self) -> None:
        await self.election.start()
        await self.ledger.start()

    async def stop(self) -> None:
        await self.election.stop()
        await self.ledger.stop()  # closes its store


class RemoteLeadership:
    """A non-voter's view: the leader the voters report, newest term wins."""

    def __init__(self, voters: list[Voter], token: str) -> None:
        self.voters = voters
        self.token = token
        self._leader: str | None = None
        self._term = 0

    def is_leader(self) -> bool:
        return False

    def leader(self) -> str | None:
        return self._leader

    def term(self) -> int:
        return self._term

    def fence_token(self) -> str:
        return f"{self._term}:{self._leader or '-'}"

    def leader_url(self) -> str | None:
        voter = next((v for v in self.voters if v.name == self._leader), None)
        return voter.status_url if voter else None

    def poll_once(self) -> None:
        best: tuple[int, str] | None = None
        for v in self.voters:
            seen = read_leader(v.status_url, timeout=0.5)
            if seen is not None and (best is None or seen[0] > best[0]):
                best = seen
        if best is not None:
            self._term, self._leader = best


class RemoteBackend:
    """Not a voter: writes go to the leader, reads from a copy refreshed every second."""

    name = "remote"
    POLL_S = 1.0

    def __init__(self, node_id: str, voters: list[Voter], *, token: str) -> None:
        self.remote = RemoteLeadership(voters, token)
        self.leadership: Leadership = self.remote
        self.ledger: RemoteLedger = RemoteLedger(
            node_id, self.remote.leader_url, self.remote.leader, self.remote.term, token=token
        )
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> list[web.RouteDef]:
        return []

    def watch_peers(self, is_alive: Callable[[str], bool]) -> None:
        """Not a voter: nothing to weigh."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="leader-poll")

    async def _poll(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.remote.poll_once)
                await asyncio.to_thread(self.ledger.refresh, 1.0)
            except Exception as exc:  # a bad answer must not end the poll
                log.warning("leader poll failed: %s", exc)
            await asyncio.sleep(self.POLL_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.ledger.close()
