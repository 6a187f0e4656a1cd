"""The optional ``swim-p2p`` backend behind the :class:`Membership` interface.

This is the only module that imports ``swim`` (the swim-p2p package), and it
does so lazily: ``pip install 'ringrift_fleet[swim-p2p]'`` to use it.  Its known
limits (measured with 1.2.6, see docs/membership.md) and how we work around them:

* its TCP and hybrid transports never form a cluster: we use UDP only;
* its config dict does not reach the Lifeguard timing service that actually
  drives probes: we set the timing through ``node.timing_service``;
* membership change events do not fire for changes learned by gossip: we poll
  its member list every ``poll_interval`` and emit our own events from the diff;
* members are identified by address, not name: we map addresses to names
  (``names``; unknown addresses are named ``host:port``);
* a restarted node is told it is dead and never refutes, and it leaks memory
  over hours: not fixable from outside, hence it is not the default backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ringrift_fleet.errors import ConfigError
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.membership.base import (
    ListenerSet,
    MembershipEvent,
    MembershipListener,
    MembershipSummary,
    cancel_task,
)
from ringrift_fleet.membership.swim.codec import Addr

log = logging.getLogger(__name__)

INSTALL_HINT = "the swim-p2p backend needs the optional package: pip install 'swim-p2p>=1.2.0'"


def swim_p2p_available() -> bool:
    try:
        importlib.import_module("swim.protocol.node")
    except ImportError:
        return False
    return True


def _import_swim() -> tuple[Any, Any]:
    try:
        node_mod = importlib.import_module("swim.protocol.node")
        udp_mod = importlib.import_module("swim.transport.udp")
    except ImportError as exc:
        raise ConfigError(f"RINGRIFT_MEMBERSHIP backend swim-p2p: {INSTALL_HINT} ({exc})") from None
    return node_mod.Node, udp_mod.UDPTransport


def _drop_some_sends(transport: Any, fraction: float) -> None:
    """Tests and the benchmark: lose ``fraction`` of outgoing datagrams, as our transport can."""
    rng = random.Random()
    send = transport.send

    async def lossy_send(data: bytes, dest: tuple[str, int]) -> None:
        if rng.random() >= fraction:
            await send(data, dest)

    transport.send = lossy_send


class SwimP2PMembership:
    """swim-p2p, wrapped so the fleet cannot tell it from our SWIM (except by its limits)."""

    def __init__(
        self,
        node_id: str,
        *,
        bind: Addr,
        seeds: Sequence[Addr] = (),
        names: Mapping[Addr, str] | None = None,
        ping_interval: float = 0.5,
        ping_timeout: float = 0.2,
        suspect_timeout: float = 2.0,
        poll_interval: float = 0.1,
        metadata: JSONMapping | None = None,
        inject_loss: float = 0.0,
    ) -> None:
        self.node_id = node_id
        self.bind = bind
        self.seeds = [(str(h), int(p)) for h, p in seeds]
        self.names = dict(names or {})
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.suspect_timeout = suspect_timeout
        self.poll_interval = poll_interval
        self._metadata: dict[str, object] = dict(metadata or {})
        self.inject_loss = inject_loss
        self._listeners = ListenerSet()
        self._node: Any = None  # a swim-p2p Node (the package is untyped)
        self._poller: asyncio.Task[None] | None = None
        self._view: dict[str, tuple[str, int]] = {}  # name -> (state, incarnation)
        self.last_error: str | None = None

    def _name(self, addr: tuple[str, int]) -> str:
        return self.names.get((addr[0], int(addr[1])), f"{addr[0]}:{addr[1]}")

    async def start(self) -> None:
        if self._node is not None:
            return
        node_cls, udp_cls = _import_swim()
        config = {
            "PROTOCOL_PERIOD": self.ping_interval,
            "PING_TIMEOUT": self.ping_timeout,
            "SUSPECT_TIMEOUT": self.suspect_timeout,
            "METRICS_ENABLED": False,
            "PORT_VALIDATION_ENABLED": False,
        }
        transport = udp_cls()
        if self.inject_loss:
            _drop_some_sends(transport, self.inject_loss)
        try:
            node = await node_cls.create(self.bind, transport, self.seeds, config=config)
        except Exception as exc:  # the library raises its own and RuntimeError for binds
            self.last_error = str(exc)
            raise ConfigError(f"swim-p2p could not start on {self.bind}: {exc}") from None
        timing = getattr(node, "timing_service", None)
        if timing is not None:  # the config dict does not reach it (see module doc)
            timing.set_base_timing(
                protocol_period=self.ping_interval,
                ping_timeout=self.ping_timeout,
                suspect_timeout=self.suspect_timeout,
            )
        await node.start()
        with contextlib.suppress(Exception):
            await node.join_cluster(self.seeds)
        self._node = node
        self._poller = asyncio.create_task(self._poll_loop())

    async def stop(self) -> None:
        poller, self._poller = self._poller, None
        await cancel_task(poller)
        node, self._node = self._node, None
        if node is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.stop(), 5)

    # --- polling: the library's own events miss gossip-learned changes -------------------

    def _snapshot(self) -> dict[str, tuple[str, int]]:
        node = self._node
        out: dict[str, tuple[str, int]] = {}
        if node is None:
            return out
        for m in node.members.get_all_members(exclude_self=True):
            state = str(getattr(m.state, "name", m.state)).lower()
            out[self._name(m.addr)] = (state, int(getattr(m, "incarnation", 0)))
        return out

    def poll(self) -> list[MembershipEvent]:
        """Diff the library's member list against our last look; emit what changed."""
        snap = self._snapshot()
        now = time.time()
        events = []
        for name, (state, inc) in snap.items():
            old = self._view.get(name)
            if old is None:
                kind = "join" if state == "alive" else state
            elif old[0] != state:
                kind = "alive" if state == "alive" else state
            else:
                continue
            events.append(MembershipEvent(kind, name, inc, {}, now))
        for name in self._view.keys() - snap.keys():
            events.append(MembershipEvent("dead", name, self._view[name][1], {}, now))
        self._view = snap
        for ev in events:
            self._listeners.emit(ev)
        return events

    async def _poll_loop(self) -> None:
        while True:
            try:
                self.poll()
            except Exception as exc:  # the library changed shape: report, keep polling
                self.last_error = f"poll failed: {exc}"
                log.warning("swim-p2p poll failed: %s", exc)
            await asyncio.sleep(self.poll_interval)

    # --- the Membership interface ------------------------------------------------------------

    def is_peer_alive(self, name: str) -> bool:
        return self._view.get(name, ("", 0))[0] in ("alive", "suspect")

    def get_alive_peers(self) -> list[str]:
        return sorted(n for n, (s, _) in self._view.items() if s in ("alive", "suspect"))

    def get_membership_summary(self) -> MembershipSummary:
        counts: dict[str, int] = {}
        for state, _ in self._view.values():
            counts[state] = counts.get(state, 0) + 1
        return {
            "node_id": self.node_id,
            "backend": "swim-p2p",
            "started": self._node is not None,
            "alive_count": counts.get("alive", 0) + counts.get("suspect", 0) + 1,
            "suspect_count": counts.get("suspect", 0),
            "dead_count": counts.get("dead", 0),
            "members": {
                n: {"state": s, "incarnation": i, "metadata": {}}
                for n, (s, i) in self._view.items()
            },
        }

    def add_listener(self, callback: MembershipListener) -> None:
        self._listeners.add(callback)

    def peer_metadata(self, name: str) -> JSONMapping | None:
        if name == self.node_id:
            return dict(self._metadata)
        return {} if name in self._view else None

    def set_local_metadata(self, metadata: JSONMapping) -> None:
        self._metadata = dict(metadata)  # swim-p2p does not gossip metadata

    def get_swim_health(self) -> dict[str, object]:
        problems = [] if self._node is not None else [self.last_error or "not started"]
        if self._node is not None and self.last_error:
            problems.append(self.last_error)
        return {
            "backend": "swim-p2p",
            "healthy": not problems,
            "problems": problems,
            "started": self._node is not None,
            "alive": len(self.get_alive_peers()),
            "dropped": {},
        }
