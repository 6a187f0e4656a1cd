"""The coordinator daemon: membership + consensus + the :8770 status server.

One runs on every host.  It owns no policy: the scheduler plugs in with
:meth:`CoordinatorNode.add_tick_handler` (called every SCHEDULER_TICK on every
node; the handler checks ``node.leadership.is_leader()`` itself) and
:meth:`CoordinatorNode.add_status_section`; ``ringrift_fleet.assembly`` does
that for every coordinator (what happens to a dead host's jobs is the
scheduler's decision, not the node's).  Every node also publishes who it
thinks leads in its membership metadata, so non-voters and people see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from ringrift_fleet.config import FeatureFlags, P2PConfig
from ringrift_fleet.execution.artifacts import artifact_routes
from ringrift_fleet.execution.consumers import attach as watch_queues
from ringrift_fleet.fleet_page import attach as attach_fleet_page
from ringrift_fleet.hybrid_coordinator import HybridCoordinator
from ringrift_fleet.malloc import TrimStats, trim_every
from ringrift_fleet.membership.http import heartbeat_routes
from ringrift_fleet.metrics import FleetCollector
from ringrift_fleet.models import NodeRole
from ringrift_fleet.server import StatusServer
from ringrift_fleet.stall_watch import StallStats, StallWatch

log = logging.getLogger(__name__)

TickHandler = Callable[[], Awaitable[None]]


class CoordinatorNode:
    """Membership, consensus and the status server of one host, run until stopped."""

    def __init__(
        self,
        config: P2PConfig,
        inventory: Any,
        node_id: str,
        *,
        flags: FeatureFlags | None = None,
        membership: Any = None,
    ) -> None:
        self.config = config
        self.inventory = inventory
        self.node_id = node_id
        self.coordinator = HybridCoordinator(
            node_id=node_id, config=config, inventory=inventory, flags=flags, membership=membership
        )
        self.status_server = StatusServer(
            self._snapshot, token=config.CLUSTER_KEY, version=self._status_version
        )
        self.status_server.registry.register(FleetCollector(self))  # /metrics
        self._tick_handlers: list[TickHandler] = []
        self._background: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.ticks = 0
        self._published: dict[str, Any] = {}
        # when this node last began to lead (time.time(); None while following): an
        # operator reads how long a hand-over took without sampling /status for it
        self._leading_since: float | None = None
        self.fleet_page = attach_fleet_page(self)  # GET / and /fleet.json, no token
        # queues holding messages no worker consumes: /status, a warning, never a silent wait
        self.queue_watch = watch_queues(self)
        # heap memory the threads freed, given back every MALLOC_TRIM_INTERVAL s (malloc.py)
        self.trim_stats = TrimStats()
        self.add_status_section("memory", self.trim_stats.as_dict)
        # seconds-long stalls of the whole interpreter, with the stacks that held it
        self.stall_stats = StallStats(threshold_s=config.COORDINATOR_STALL_S)
        self.add_status_section("stalls", self.stall_stats.as_dict)

    # --- what the scheduler uses ---------------------------------------------------------

    @property
    def membership(self) -> Any:
        return self.coordinator.membership

    @property
    def leadership(self) -> Any:
        return self.coordinator.leadership

    @property
    def ledger(self) -> Any:
        return self.coordinator.ledger

    def add_tick_handler(self, handler: TickHandler) -> None:
        self._tick_handlers.append(handler)

    def add_background(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A loop of its own beside the ticks (before :meth:`run`), cancelled on stop:
        for work that must go on while a tick is held up."""
        self._background.append((name, loop))

    def add_status_section(self, name: str, fn: Callable[[], Any]) -> None:
        self.status_server.add_status_section(name, fn)

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        """Mount more HTTP routes (before :meth:`run`)."""
        self.status_server.add_routes(routes)

    # --- where this host listens -----------------------------------------------------------

    @property
    def status_port(self) -> int:
        voter = next((v for v in self.coordinator.voters if v.name == self.node_id), None)
        if voter is not None:
            return voter.status_port
        inv = self.inventory
        if inv is not None:
            with contextlib.suppress(Exception):
                return int(inv.host(self.node_id).status_port)
        return self.config.DEFAULT_PORT

    # --- /status ------------------------------------------------------------------------

    def _status_version(self) -> Any:
        """Changes whenever leadership or the ledger does (cheap; polled 4 times a second)."""
        lead, ledger = self.leadership, self.ledger
        if lead is None:
            return None
        leading = self._note_leading(lead)
        return (lead.leader(), lead.term(), leading, ledger.version() if ledger else None)

    def _note_leading(self, lead: Any) -> bool:
        """Whether we lead now, noting when that began (called 4 times a second by the
        status refresh and at each tick: the time is good to a quarter second)."""
        leading = bool(lead.is_leader())
        if not leading:
            self._leading_since = None
        elif self._leading_since is None:
            self._leading_since = time.time()
        return leading

    def _snapshot(self) -> dict[str, Any]:
        lead = self.leadership
        ledger = self.ledger
        leader = lead.leader() if lead is not None else None
        is_leader = lead is not None and self._note_leading(lead)
        peers = self.coordinator.get_alive_peers()
        queue: dict[str, Any] = {}
        if ledger is not None:
            try:
                queue = ledger.get_queue_stats()
            except Exception as exc:
                queue = {"error": str(exc)}
        membership: dict[str, Any] = {}
        if self.membership is not None:
            with contextlib.suppress(Exception):
                membership = dict(self.membership.get_membership_summary())
        return {
            "node_id": self.node_id,
            "role": (NodeRole.LEADER if is_leader else NodeRole.FOLLOWER).value,
            "is_leader": is_leader,
            "leader_id": leader,
            "leader_since": self._leading_since,
            "term": lead.term() if lead is not None else 0,
            "fence_token": lead.fence_token() if lead is not None else "",
            "is_voter": self.coordinator.is_voter,
            "voters": [v.name for v in self.coordinator.voters],
            "alive_peers": len(peers),
            "peers": peers,
            "work_queue": queue,
            "swim_raft": self.coordinator.get_status(),
            "raft_detail": self.coordinator.raft_detail(),
            "ledger_copies": self.coordinator.replica_bodies.counts(),
            "membership": membership,
            "ticks": self.ticks,
        }

    # --- running ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Start everything, tick until :meth:`request_stop`, then stop everything."""
        self.coordinator.prepare()
        self.status_server.add_routes(self.coordinator.routes())
        heartbeats = self.coordinator.heartbeat_manager()
        if heartbeats is not None:
            self.status_server.add_routes(heartbeat_routes(heartbeats))
        self.status_server.add_routes(
            artifact_routes(self.config.artifact_dir, self.config.CLUSTER_KEY)
        )
        # the coordinator resolved BIND_HOST "" to the inventory address or loopback
        await self.status_server.start(self.coordinator.config.BIND_HOST, self.status_port)
        stalls = StallWatch(self.config.COORDINATOR_STALL_S, self.stall_stats)
        stalls.start()
        trims = asyncio.create_task(
            trim_every(self.config.MALLOC_TRIM_INTERVAL, self.trim_stats), name="malloc-trim"
        )
        background: list[asyncio.Task[None]] = []
        try:
            await self.coordinator.start()
            log.info(
                "coordinator %s up: consensus=%s status=:%s",
                self.node_id,
                self.coordinator.backend,
                self.status_server.port,
            )
            self.started.set()
            background = [asyncio.create_task(f(), name=n) for n, f in self._background]
            await self._tick_loop()
        finally:
            for task in (trims, *background):
                task.cancel()
            await asyncio.gather(trims, *background, return_exceptions=True)
            stalls.stop()
            await self.coordinator.stop()
            await self.status_server.stop()

    async def _tick_loop(self) -> None:
        period = self.config.SCHEDULER_TICK
        while not self._stop.is_set():
            started = time.monotonic()
            if self.leadership is not None:
                self._note_leading(self.leadership)
            self._publish_leader()
            for handler in list(self._tick_handlers):
                try:
                    await handler()
                except Exception:  # a plug-in's bug must not stop the coordinator
                    log.exception("tick handler %r failed", handler)
            self.ticks += 1
            lead = self.leadership
            if lead is not None and self.coordinator.is_voter and not lead.is_leader():
                # a voter elected meanwhile plans at once, not up to a tick later
                await sleep_until(started + period, self._stop, wake=lead.is_leader)
            else:
                await sleep_until(started + period, self._stop)

    def _publish_leader(self) -> None:
        membership, lead = self.membership, self.leadership
        if membership is None or lead is None:
            return
        meta = {
            "leader": lead.leader(),
            "term": lead.term(),
            "role": "leader" if lead.is_leader() else "follower",
            "status_port": self.status_port,
            "is_voter": self.coordinator.is_voter,
        }
        if meta != self._published:
            with contextlib.suppress(Exception):
                membership.set_local_metadata(meta)
                self._published = meta


LEADER_WATCH_S = 0.05  # how often a follower between ticks looks whether it now leads


async def sleep_until(
    due: float,
    stop: asyncio.Event,
    *,
    wake: Callable[[], bool] | None = None,
    step: float = LEADER_WATCH_S,
) -> None:
    """Sleep until ``due`` (monotonic), ``stop`` is set, or ``wake()`` turns true
    (looked at every ``step`` s)."""
    while not stop.is_set():
        left = due - time.monotonic()
        if left <= 0 or (wake is not None and wake()):
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=left if wake is None else min(left, step))
