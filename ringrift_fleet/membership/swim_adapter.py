# mypy: disallow-any-explicit
"""``SwimMembershipManager``: our SWIM behind the :class:`Membership` interface.

The name and methods are the ones users know from the RingRift P2P module;
underneath is the sans-I/O core (``swim/protocol.py``) in its UDP shell.

With :meth:`SwimMembershipManager.attach_http` (MEMBERSHIP_MODE=swim in a
coordinator) HTTP heartbeats run beside SWIM for peers that speak only HTTP
(a host-by-host rollout): the rule is ``membership/mixed.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ringrift_fleet.config import P2PConfig, get_p2p_config, resolve_bind_host
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.membership.base import (
    SWIM_RECOVERED,
    ListenerSet,
    MemberInfo,
    MembershipEvent,
    MembershipListener,
    MembershipSummary,
)

if TYPE_CHECKING:  # imported lazily: a bare SWIM agent need not load aiohttp
    from ringrift_fleet.membership.http import HttpHeartbeatMembership
    from ringrift_fleet.membership.mixed import HttpOnlyPeers
from ringrift_fleet.membership.swim.codec import ALIVE, DEAD, LEFT, SUSPECT, Addr
from ringrift_fleet.membership.swim.protocol import SwimConfig, SwimNode
from ringrift_fleet.membership.swim.transport import UdpSwimTransport

log = logging.getLogger(__name__)

RECOVERY_MIN_INTERVAL = 300.0  # s: check_and_recover restarts SWIM at most this often
# Seconds without a single datagram, while we believe others alive, before
# SWIM counts as unhealthy (a dead socket or a cut link, not a quiet cluster).
SILENCE_UNHEALTHY = 30.0


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


class SwimMembershipManager:
    """One node's SWIM membership: start it, ask who is alive, listen for changes."""

    def __init__(
        self,
        node_id: str,
        *,
        bind: Addr = ("0.0.0.0", 7946),
        advertise: Addr | None = None,
        seeds: Sequence[Addr] = (),
        cluster_key: str | bytes = b"",
        swim_config: SwimConfig | None = None,
        metadata: JSONMapping | None = None,
        inject_loss: float = 0.0,
        inject_loss_in: float = 0.0,
        recovery_min_interval: float = RECOVERY_MIN_INTERVAL,
    ) -> None:
        self.node_id = node_id
        self.bind = (bind[0], int(bind[1]))
        if advertise is None:
            host = bind[0] if bind[0] not in ("0.0.0.0", "::", "") else "127.0.0.1"
            advertise = (host, int(bind[1]))
        self.advertise = advertise
        self.seeds = [(str(h), int(p)) for h, p in seeds]
        self.key = _key_bytes(cluster_key)
        self.swim_config = swim_config or SwimConfig()
        self.inject_loss = inject_loss
        self.inject_loss_in = inject_loss_in
        self.recovery_min_interval = recovery_min_interval
        self._metadata: dict[str, object] = dict(metadata or {})
        self._listeners = ListenerSet()
        # member -> when (time.time) this node last saw its state change: /status
        # says since when a peer is dead, so a reader need not sample to know
        self._since: dict[str, float] = {}
        self._node: SwimNode | None = None
        self._transport: UdpSwimTransport | None = None
        self._started_at: float | None = None
        self._last_recovery: float | None = None
        self._last_incarnation = 0  # the stopped node's, so that a restart outranks it
        self.recoveries = 0
        self.last_error: str | None = None
        self.http: HttpHeartbeatMembership | None = None
        self._mixed: HttpOnlyPeers | None = None

    def attach_http(self, http: HttpHeartbeatMembership) -> None:
        """Run ``http`` beside SWIM (started and stopped with it) for peers that speak
        only HTTP: they count alive while their heartbeats arrive; we beat only to
        peers SWIM does not hold alive; SWIM alone judges the peers that speak it."""
        from ringrift_fleet.membership.mixed import HttpOnlyPeers

        self.http = http
        self._mixed = mixed = HttpOnlyPeers(
            http, self._swim_alive, lambda n: self._swim_meta(n) is not None
        )
        http.beat_to = mixed.wants_heartbeat
        http.add_listener(self._on_http_event)

    def _on_http_event(self, ev: MembershipEvent) -> None:
        if self._mixed is not None and self._mixed.pass_http_event(ev):
            self._listeners.emit(ev)

    # --- construction from the inventory -------------------------------------------------

    @classmethod
    def from_distributed_hosts(
        cls,
        node_id: str,
        hosts_file: str | None = None,
        config: P2PConfig | None = None,
        *,
        swim_config: SwimConfig | None = None,
        inject_loss: float | None = None,
        inject_loss_in: float | None = None,
        recovery_min_interval: float = RECOVERY_MIN_INTERVAL,
    ) -> SwimMembershipManager:
        """Bind this host's swim_port; every other host in the inventory that is not
        retired is a seed (asked again while no member of our view lives there)."""
        from ringrift_fleet import inventory

        cfg = config or get_p2p_config()
        inv = inventory.load(hosts_file or cfg.HOSTS_FILE)
        me = inv.host(node_id)
        # a retired host's address may be someone else's by now: it is no seed
        seeds = [
            (h.address, h.swim_port)
            for h in inv.hosts
            if h.name != node_id and h.status != "retired"
        ]
        metadata: dict[str, object] = {
            "host": me.name,
            "gpu": me.gpu,
            "gpu_count": me.gpu_count,
            "rank": me.gpu_power,
            "voter": me.name in inv.raft_voters,
            "status_port": me.status_port,
        }
        try:
            from importlib.metadata import version

            metadata["version"] = version("ringrift_fleet")
        except Exception:  # running from a source tree without metadata
            metadata["version"] = "dev"
        # Test-only loss knobs, so real coordinators can be run over a lossy "link".
        if inject_loss is None:
            inject_loss = inject_loss_from_env()
        if inject_loss_in is None:
            inject_loss_in = inject_loss_from_env("RINGRIFT_SWIM_INJECT_LOSS_IN")
        return cls(
            node_id,
            bind=(resolve_bind_host(cfg, me.address), me.swim_port),
            advertise=(cfg.ADVERTISE_HOST or me.address, me.swim_port),
            seeds=seeds,
            cluster_key=cfg.CLUSTER_KEY,
            swim_config=swim_config or SwimConfig.from_p2p_config(cfg),
            metadata=metadata,
            inject_loss=inject_loss,
            inject_loss_in=inject_loss_in,
            recovery_min_interval=recovery_min_interval,
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.http is not None:  # first: HTTP-only peers are heard even if SWIM fails
            await self.http.start()
        if self._transport is not None and self._transport.running:
            return
        node = SwimNode(
            self.node_id,
            self.advertise,
            key=self.key,
            config=self.swim_config,
            seeds=self.seeds,
            metadata=self._metadata,
            # A restarted process outranks every verdict about its previous life;
            # a restarted socket (check_and_recover) outranks this process's own
            # earlier incarnations, which refutations may have raised past the clock.
            incarnation=max(int(time.time()), self._last_incarnation + 1),
        )
        transport = UdpSwimTransport(
            node,
            self.bind,
            self._on_events,
            inject_loss=self.inject_loss,
            inject_loss_in=self.inject_loss_in,
        )
        try:
            await transport.start()
        except OSError as exc:
            self.last_error = f"cannot bind SWIM to {self.bind[0]}:{self.bind[1]}: {exc.strerror}"
            raise ConfigError(f"RINGRIFT_P2P_SWIM_PORT={self.bind[1]}: {self.last_error}") from None
        self._node, self._transport = node, transport
        self._started_at = time.monotonic()
        self.last_error = None

    async def stop(self, *, leave: bool = True) -> None:
        """Leave gracefully (peers see "left", not "dead"), then close the socket."""
        if self.http is not None:
            await self.http.stop(leave=leave)
        transport = self._transport
        if transport is None:
            return
        if self._node is not None:
            self._last_incarnation = self._node.incarnation
        if leave and transport.running:
            await transport.leave(linger=self.swim_config.ping_interval)
        transport.close()
        self._transport = None
        # asyncio closes the socket on the next loop turns; let it, so that a
        # restart (check_and_recover) can bind the same port straight away.
        for _ in range(3):
            await asyncio.sleep(0)

    @property
    def started(self) -> bool:
        return self._transport is not None and self._transport.running

    # --- who is alive ------------------------------------------------------------------------

    def _swim_alive(self, name: str) -> bool:
        node = self._node
        if node is None or not self.started:
            return False
        return name != self.node_id and node.state_of(name) in (ALIVE, SUSPECT)

    def _swim_meta(self, name: str) -> JSONMapping | None:
        node = self._node
        m = node.members.get(name) if node else None
        return dict(m.metadata) if m else None

    def is_peer_alive(self, name: str) -> bool:
        """Alive or suspect: SWIM holds a suspect alive until its suspicion times out.
        (With heartbeats attached, also an HTTP-only peer whose heartbeats arrive.)"""
        if self._swim_alive(name):
            return True
        return self._mixed is not None and self._mixed.alive_over_http(name)

    def get_alive_peers(self) -> list[str]:
        node = self._node
        alive = set(node.live_names()) if node is not None and self.started else set()
        if self._mixed is not None:
            alive |= set(self._mixed.extra_alive())
        return sorted(alive)

    def peer_metadata(self, name: str) -> JSONMapping | None:
        if name == self.node_id:
            return dict(self._metadata)
        meta = self._swim_meta(name)
        mixed = self._mixed
        if meta is None and self.http is not None and mixed is not None and mixed.http_only(name):
            return self.http.peer_metadata(name)
        return meta

    def set_local_metadata(self, metadata: JSONMapping) -> None:
        node = self._node
        if node is not None:
            out = node.set_metadata(time.monotonic(), metadata)
            if self._transport is not None:
                self._transport._dispatch(out)
        else:
            SwimNode._check_metadata(metadata)
        self._metadata = dict(metadata)
        if self.http is not None:
            self.http.set_local_metadata(metadata)

    def get_membership_summary(self) -> MembershipSummary:
        node = self._node
        members: dict[str, MemberInfo] = {}
        counts = {ALIVE: 0, SUSPECT: 0, DEAD: 0, LEFT: 0}
        if node is not None:
            for m in node.members.values():
                counts[m.state] += 1
                members[m.name] = {
                    "state": m.state,
                    "incarnation": m.incarnation,
                    "address": f"{m.addr[0]}:{m.addr[1]}",
                    "metadata": dict(m.metadata),
                    "since": self._since.get(m.name),
                }
        summary: MembershipSummary = {
            "node_id": self.node_id,
            "backend": "swim",
            "started": self.started,
            "incarnation": node.incarnation if node else None,
            "alive_count": counts[ALIVE] + counts[SUSPECT] + (1 if self.started else 0),
            "suspect_count": counts[SUSPECT],
            "dead_count": counts[DEAD],
            "left_count": counts[LEFT],
            "members": members,
        }
        if self._mixed is not None:
            alive = len(self.get_alive_peers()) + (1 if self.started else 0)
            summary = self._mixed.add_to_summary(summary, alive)
        return summary

    # --- events -----------------------------------------------------------------------------

    def add_listener(self, callback: MembershipListener) -> None:
        self._listeners.add(callback)

    def _on_events(self, events: list[MembershipEvent]) -> None:
        wall = time.time()
        mixed = self._mixed
        for ev in events:
            if ev.kind != "metadata":
                self._since[ev.node] = wall
            if mixed is not None and not mixed.pass_swim_event(ev):
                continue  # it rolled back to HTTP heartbeats, and they arrive
            self._listeners.emit(
                MembershipEvent(ev.kind, ev.node, ev.incarnation, dict(ev.metadata), wall)
            )

    # --- health and recovery ------------------------------------------------------------------

    def get_swim_health(self) -> dict[str, object]:
        node, transport = self._node, self._transport
        problems = self._problems()
        stats = node.stats if node else None
        return {
            "backend": "swim",
            "healthy": not problems,
            "problems": problems,
            "warnings": self._warnings(),
            "started": self.started,
            "members": len(node.members) if node else 0,
            "alive": len(node.live_names()) if node else 0,
            "local_health_multiplier": node.lhm if node else None,
            "incarnation": node.incarnation if node else None,
            "datagrams_sent": stats.sent if stats else 0,
            "datagrams_received": stats.received if stats else 0,
            "dropped": dict(stats.dropped) if stats else {},
            "probes": stats.probes if stats else 0,
            "probe_failures": stats.probe_failures if stats else 0,
            "refutations": stats.refutations if stats else 0,
            "core_errors": transport.errors if transport else 0,
            "fallback": {
                "listening": bool(transport and transport.fallback_error is None),
                "error": transport.fallback_error if transport else None,
                "probes_sent": transport.fallback_sent if transport else 0,
                "pings_answered": transport.fallback_answered if transport else 0,
                "acks": stats.fallback_acks if stats else 0,
                "suspicions_avoided": stats.fallback_saves if stats else 0,
                # refused by the target's host: its process was gone (a quick verdict)
                "refusals": stats.fallback_refusals if stats else 0,
            },
            "recoveries": self.recoveries,
            "last_recovery": self._last_recovery,
            "last_error": self.last_error,
            **({"http": self.http.get_swim_health()} if self.http is not None else {}),
        }

    def _problems(self) -> list[str]:
        node, transport = self._node, self._transport
        if transport is None or node is None or not transport.running:
            return ["not started" if self.last_error is None else self.last_error]
        out = []
        if transport.errors:
            out.append(f"{transport.errors} internal errors in the protocol core")
        now = time.monotonic()
        last = transport.last_received or self._started_at or now
        if self.seeds and now - last > SILENCE_UNHEALTHY:
            out.append(f"no datagram received for {now - last:.0f} s")
        return out

    def _warnings(self) -> list[str]:
        """Conditions worth showing that a restart would not cure.

        A local health multiplier at its ceiling means this process misses acks,
        nearly always because it gets too little CPU (a busy GPU host). Lifeguard's
        answer is already in force: our probes and suspicions wait longer.  A new
        socket would only forget every member and make this host look like it
        left, so it is reported, not acted on (the 30-host soak's leader churn)."""
        node = self._node
        if node is not None and self.started and node.lhm >= node.config.lhm_max:
            return ["local health at its worst: we miss most acks (CPU-starved?)"]
        return []

    def is_healthy(self) -> bool:
        return not self._problems()

    async def check_and_recover(self) -> bool:
        """Restart an unhealthy SWIM (at most once per ``recovery_min_interval``).

        On success emits ``SWIM_RECOVERED`` to the listeners and the log."""
        if self.is_healthy():
            return False
        now = time.monotonic()
        if (
            self._last_recovery is not None
            and now - self._last_recovery < self.recovery_min_interval
        ):
            return False
        self._last_recovery = now
        problems = self._problems()
        await self.stop(leave=False)
        try:
            await self.start()
        except ConfigError as exc:
            log.error("SWIM recovery failed: %s", exc)
            return False
        self.recoveries += 1
        inc = self._node.incarnation if self._node else 0
        log.warning("%s: SWIM restarted after: %s", SWIM_RECOVERED, "; ".join(problems))
        self._listeners.emit(
            MembershipEvent(SWIM_RECOVERED, self.node_id, inc, {"problems": problems}, time.time())
        )
        return True


def inject_loss_from_env(var: str = "RINGRIFT_SWIM_INJECT_LOSS") -> float:
    """``RINGRIFT_SWIM_INJECT_LOSS``: a test-only fraction of outgoing datagrams to drop
    (``RINGRIFT_SWIM_INJECT_LOSS_IN``: of incoming ones)."""
    raw = os.environ.get(var, "0")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r}: expected a fraction 0-1") from None
    if not 0 <= value < 1:
        raise ConfigError(f"{var}={raw!r}: expected a fraction 0-1")
    return value
