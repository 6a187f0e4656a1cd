"""HybridCoordinator: routes membership and consensus by the feature flags.

Consensus is chosen once, at start, by :func:`choose_consensus` (pure):

* ``raft``   — Raft or nothing: if it cannot start, start fails loudly.
* ``hybrid`` — Raft, and Bully only when Raft is *unavailable* (pysyncobj not
  installed, or its port cannot be bound).  Never because Raft has no
  quorum: a minority partition falling back to Bully would elect a second
  leader, which is exactly what consensus is for.
* ``bully``  — Bully leases among the voters, the ledger in SQLite.

``RINGRIFT_RAFT_ENABLED=false`` makes every mode ``bully``, which is the
instant rollback (docs/consensus.md).  Hosts that are not voters run no
election; they forward writes to the leader and learn who leads by asking the
voters' ``/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ringrift_fleet.config import (
    FeatureFlags,
    P2PConfig,
    get_feature_flags,
    get_p2p_config,
    resolve_bind_host,
)
from ringrift_fleet.consensus.api import Leadership, Ledger
from ringrift_fleet.consensus.backends import (
    BullyBackend,
    ConsensusBackend,
    RaftBackend,
    RemoteBackend,
)
from ringrift_fleet.consensus.bully import raft_successor_wait
from ringrift_fleet.consensus.leader_view import leader_route
from ringrift_fleet.consensus.remote import ReplicaBodies, ledger_routes
from ringrift_fleet.consensus.voters import Voter, load_inventory, voters_from_inventory
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.membership.http import HttpHeartbeatMembership

log = logging.getLogger(__name__)

RAFT, BULLY, REMOTE = "raft", "bully", "remote"


class RaftUnavailable(ConfigError):
    """Raft cannot run on this host (library missing, port taken): the operator must act."""


def choose_consensus(mode: str, is_voter: bool, raft_error: str | None) -> str:
    """Which backend runs: ``raft``, ``bully`` or ``remote`` (not a voter).

    ``raft_error`` is None when Raft started (or was not tried yet).
    Raises RaftUnavailable when mode is ``raft`` and Raft could not start.
    """
    if not is_voter:
        return REMOTE
    if mode == BULLY:
        return BULLY
    if raft_error is None:
        return RAFT
    if mode == RAFT:
        raise RaftUnavailable(f"CONSENSUS_MODE=raft but Raft cannot run here: {raft_error}")
    return BULLY


def build_membership(
    config: P2PConfig, inventory: Any, node_id: str, flags: FeatureFlags
) -> Any | None:
    """The membership manager MEMBERSHIP_MODE asks for (None if that part is missing).

    HTTP heartbeats go to every inventory host's status server; SWIM binds this
    host's swim_port with every other host as a seed; hybrid is both, SWIM first.
    "swim" keeps heartbeats too, for peers that speak only HTTP (membership/mixed.py).
    """
    mode = flags.effective_membership_mode
    try:
        from ringrift_fleet.membership.http import HttpHeartbeatMembership
    except ImportError as exc:
        log.warning("membership unavailable (%s); peers come from consensus only", exc)
        return None
    hosts = list(getattr(inventory, "hosts", ()) or ())
    peers = {h.name: f"http://{h.address}:{h.status_port}" for h in hosts}
    http = HttpHeartbeatMembership(node_id, peers, config)
    if mode == "http" or inventory is None:
        return http
    try:
        from ringrift_fleet.membership.swim_adapter import SwimMembershipManager

        swim = SwimMembershipManager.from_distributed_hosts(
            node_id, hosts_file=getattr(inventory, "path", None) or config.HOSTS_FILE, config=config
        )
    except Exception as exc:  # SWIM trouble degrades to heartbeats, loudly
        log.error("SWIM membership could not be built (%s); using HTTP heartbeats", exc)
        return http
    if mode == "swim":
        # heartbeats beside SWIM, for peers that speak only HTTP (a host-by-host rollout)
        swim.attach_http(http)
        return swim
    from ringrift_fleet.membership.hybrid import HybridMembershipManager

    return HybridMembershipManager(swim, http)


LONE_VOTER_WAIT = 10.0  # s start() waits for a lone voter to lead itself (Raft: ~1 s)
SWIM_RECOVER_EVERY = 10.0  # s between SWIM health checks in pure SWIM mode


def _inventory_address(inventory: Any, node_id: str) -> str | None:
    for h in getattr(inventory, "hosts", ()) or ():
        if h.name == node_id:
            return str(h.address)
    return None


def _swim_agent(membership: Any) -> Any | None:
    """The SWIM manager inside ``membership`` (itself, or a hybrid's), else None."""
    agent = getattr(membership, "swim", membership)
    if type(agent).__name__ in ("SwimMembershipManager", "SwimP2PMembership"):
        return agent
    return None


class HybridCoordinator:
    """Membership and consensus behind one face, chosen by feature flags."""

    def __init__(
        self,
        orchestrator: Any = None,
        node_id: str | None = None,
        *,
        config: P2PConfig | None = None,
        inventory: Any = None,
        flags: FeatureFlags | None = None,
        membership: Any = None,
        state_dir: str | Path | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.config = config or get_p2p_config()
        self.node_id = node_id or self.config.NODE_ID
        self.flags = flags or get_feature_flags()
        if inventory is None and os.path.exists(self.config.HOSTS_FILE):
            inventory = load_inventory(self.config.HOSTS_FILE)
        self.inventory = inventory
        if not self.config.BIND_HOST:  # "" = this host's inventory address, else loopback
            self.config = self.config.replace(
                BIND_HOST=resolve_bind_host(
                    self.config, _inventory_address(inventory, self.node_id)
                )
            )
        self.voters = voters_from_inventory(inventory, self.config) if inventory is not None else []
        if not self.voters:  # no inventory: a fleet of one, as in the README's examples
            self.voters = [
                Voter(self.node_id, "127.0.0.1", self.config.RAFT_PORT, self.config.DEFAULT_PORT)
            ]
        self.is_voter = any(v.name == self.node_id for v in self.voters)
        self.state_dir = Path(state_dir or self.config.state_dir)
        self.membership = membership
        self.backend: str | None = None
        self.raft_error: str | None = None
        self.consensus: ConsensusBackend | None = None
        self.ledger: Ledger | None = None
        self.leadership: Leadership | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.membership_started = False
        self.swim_recover_every = SWIM_RECOVER_EVERY  # s between checks (tests shorten it)
        self.swim_recoveries: list[float] = []  # wall times SWIM_RECOVERED was emitted
        # what GET /consensus/ledger has sent the standby copies (shown in /status)
        self.replica_bodies = ReplicaBodies()

    # --- start / stop ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Build consensus and membership objects (nothing runs yet; routes are known)."""
        if self.backend is None:
            self.open_consensus()
        if self.membership is None:
            self.membership = build_membership(
                self.config, self.inventory, self.node_id, self.flags
            )
        if self.consensus is not None and self.membership is not None:
            self.consensus.watch_peers(self.membership.is_peer_alive)

    def heartbeat_manager(self) -> HttpHeartbeatMembership | None:
        """The HTTP-heartbeat part of membership, whose /heartbeat route we serve."""
        m = self.membership
        if isinstance(m, HttpHeartbeatMembership):
            return m
        http = getattr(m, "http", None)
        return http if isinstance(http, HttpHeartbeatMembership) else None

    def open_consensus(self) -> None:
        """Create the consensus backend (synchronously; before the server starts)."""
        mode = self.flags.effective_consensus_mode
        if self.is_voter and mode in (RAFT, "hybrid"):
            try:
                self.ledger = self._open_raft()
            except RaftUnavailable as exc:
                self.raft_error = str(exc)
                log.error("raft unavailable: %s", exc)
        self.backend = choose_consensus(mode, self.is_voter, self.raft_error)
        cfg, token = self.config, self.config.CLUSTER_KEY
        consensus: ConsensusBackend
        if self.backend == RAFT:
            assert self.ledger is not None
            consensus = RaftBackend(
                self.ledger,
                self.voters,
                state_dir=self.state_dir,
                token=token,
                lease=cfg.LEADER_LEASE_DURATION,
            )
        elif self.backend == BULLY:
            consensus = BullyBackend(
                self.node_id,
                self.voters,
                state_dir=self.state_dir,
                token=token,
                lease=cfg.LEADER_LEASE_DURATION,
                raft_successor_wait=raft_successor_wait(cfg.RAFT_MAX_TIMEOUT),
            )
        else:
            consensus = RemoteBackend(self.node_id, self.voters, token=token)
        self.consensus = consensus
        self.ledger, self.leadership = consensus.ledger, consensus.leadership

    def _open_raft(self) -> Ledger:
        # pysyncobj is a hard dependency; imported here only so that non-voters do not
        # load it (about 7 MB RSS: docs/bench/coordinator_rss.md, import_mb.pysyncobj)
        from ringrift_fleet.consensus.raft_state import RaftLedger

        try:
            return RaftLedger(
                self.node_id, self.voters, config=self.config, state_dir=self.state_dir
            )
        except OSError as exc:
            raise RaftUnavailable(str(exc)) from None

    def routes(self) -> list[web.RouteDef]:
        """Routes the status server must mount for this coordinator."""
        out = ledger_routes(lambda: self.ledger, self.config.CLUSTER_KEY, self.replica_bodies)
        out.append(leader_route(lambda: self.leadership))
        if self.consensus is not None:
            out += self.consensus.routes()
        return out

    async def start(self, wait_for_leader: float | None = None) -> None:
        """Start consensus and membership (the README's ``await coordinator.start()``).

        ``wait_for_leader``: seconds to wait (bounded) until some voter leads.
        By default a lone voter waits up to LONE_VOTER_WAIT for itself, so that
        ``is_leader()`` right after ``start()`` is True, as the seed's example
        expects; with several voters the default is not to wait (an election
        needs the others up).  :meth:`wait_for_leader` waits later.
        """
        await self._start()
        if wait_for_leader is None and self.is_voter and len(self.voters) == 1:
            wait_for_leader = LONE_VOTER_WAIT
        if wait_for_leader:
            await self.wait_for_leader(wait_for_leader)

    async def wait_for_leader(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until a leader is known; True if one is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            lead = self.leadership
            if lead is not None and (lead.is_leader() or lead.leader() is not None):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)

    async def _start(self) -> None:
        self.prepare()
        if self.consensus is not None:
            await self.consensus.start()
        if self.membership is not None:
            try:
                await self.membership.start()
                self.membership_started = True
            except Exception as exc:  # membership trouble must not stop consensus
                log.error("membership failed to start: %s", exc)
            if _swim_agent(self.membership) is not None and not hasattr(self.membership, "swim"):
                # pure SWIM: nobody else restarts it (the hybrid manager has its own watcher)
                self._tasks.append(asyncio.create_task(self._recover_swim(), name="swim-recover"))

    async def _recover_swim(self) -> None:
        while True:
            await asyncio.sleep(self.swim_recover_every)
            try:
                await self.check_and_recover_swim()
            except Exception:  # recovery must never end the loop
                log.exception("SWIM recovery check failed")

    async def check_and_recover_swim(self) -> bool:
        """Restart SWIM when unhealthy, at most once per 5 minutes (the manager's
        RECOVERY_MIN_INTERVAL); a restart emits SWIM_RECOVERED to membership
        listeners.  Runs every ``swim_recover_every`` s in pure SWIM mode."""
        recover = getattr(self.membership, "check_and_recover", None)
        if _swim_agent(self.membership) is None or recover is None:
            return False
        recovered = bool(await recover())
        if recovered:
            self.membership_started = True
            self.swim_recoveries = [*self.swim_recoveries, time.time()][-20:]
        return recovered

    _check_and_recover_swim = check_and_recover_swim  # the seed's (orchestrator mixin) name

    def get_swim_health(self) -> dict[str, Any]:
        """SWIM health and recovery stats (the seed's orchestrator helper)."""
        agent = _swim_agent(self.membership)
        if agent is None:
            return {
                "backend": None,
                "running": False,
                "healthy": False,
                "problems": [f"no SWIM agent: membership mode {self.membership_mode()}"],
                "recoveries": 0,
            }
        try:
            health = dict(self.membership.get_swim_health())
        except Exception as exc:
            health = {"healthy": False, "problems": [f"health unavailable: {exc}"]}
        health["running"] = bool(getattr(agent, "started", False))
        health["coordinator_recoveries"] = list(self.swim_recoveries)
        return health

    def _alive_count(self, peers: int) -> int:
        """get_membership_summary()'s alive_count: live members, this node included."""
        if self.membership is not None:
            with contextlib.suppress(Exception):
                return int(self.membership.get_membership_summary()["alive_count"])
        return peers + 1

    def membership_mode(self) -> str:
        """The membership mode in effect: what answers ``get_alive_peers`` now.

        ``swim``/``hybrid`` only while a SWIM agent runs; ``http`` when
        heartbeats answer (SWIM off, no inventory, or SWIM not running);
        ``none`` without membership."""
        m = self.membership
        if m is None:
            return "none"
        agent = _swim_agent(m)
        if agent is None:
            return "http"
        running = bool(getattr(agent, "started", False))
        if hasattr(m, "swim"):
            return "hybrid" if running else "http"
        return "swim"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.membership is not None and self.membership_started:
            with contextlib.suppress(Exception):
                await self.membership.stop()
        if self.consensus is not None:
            await self.consensus.stop()

    # --- the README's interface -----------------------------------------------------------

    def get_alive_peers(self) -> list[str]:
        """Routed by MEMBERSHIP_MODE; without membership, the voters consensus can reach."""
        if self.membership is not None:
            with contextlib.suppress(Exception):
                return sorted(self.membership.get_alive_peers())
        detail = self.raft_detail()
        return list(detail.get("connected_voters", [])) if detail else []

    def is_leader(self) -> bool:
        return bool(self.leadership is not None and self.leadership.is_leader())

    def claim_work(self, work_id: str) -> bool:
        return bool(self.ledger is not None and self.ledger.claim_work(work_id, self.node_id))

    def raft_detail(self) -> dict[str, Any]:
        status: Callable[[], dict[str, Any]] | None = getattr(self.ledger, "raft_status", None)
        if self.backend != RAFT or status is None:
            return {}
        try:
            return status()
        except Exception as exc:
            return {"error": str(exc)}

    def get_status(self) -> dict[str, Any]:
        """The ``swim_raft`` section of /status plus an ``http`` section."""
        alive = self.get_alive_peers()
        swim_on = self.flags.effective_membership_mode in ("swim", "hybrid")
        raft_on = self.flags.effective_consensus_mode in (RAFT, "hybrid")
        lead = self.leadership
        raft: dict[str, Any] = {"enabled": raft_on, "available": self.backend == RAFT}
        if self.backend == RAFT and lead is not None:
            raft.update(is_leader=lead.is_leader(), leader=lead.leader(), term=lead.term())
        elif self.raft_error:
            raft["error"] = self.raft_error
        agent = _swim_agent(self.membership)
        swim_running = bool(agent is not None and getattr(agent, "started", False))
        swim_health: dict[str, Any] = {}
        if agent is not None:
            swim_health = self.get_swim_health()
        in_effect = self.membership_mode()
        modes: dict[str, Any] = {"membership_mode": in_effect}
        if in_effect != self.flags.membership_mode:
            modes["membership_mode_configured"] = self.flags.membership_mode
        return {
            **modes,
            "consensus_mode": self.flags.effective_consensus_mode,
            "consensus_backend": self.backend,
            "swim": {
                "enabled": swim_on,
                "started": swim_running,  # a SWIM agent is running right now
                # like get_membership_summary(): the live members, this node included
                "alive_count": self._alive_count(len(alive)),
                **({"health": swim_health} if swim_health else {}),
            },
            "raft": raft,
            "http": {
                "enabled": in_effect == "http" or hasattr(self.membership, "http"),
                "bully": self.backend == BULLY,
                "leader": lead.leader() if lead is not None and self.backend != RAFT else None,
            },
            "warnings": self.flags.warnings,
        }
