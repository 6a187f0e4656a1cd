# mypy: disallow-any-explicit
"""``HybridMembershipManager``: SWIM is the authority while healthy; HTTP only stands in.

Why one authority and not "alive if either says so": with an OR, a host is
dead only once *both* protocols agree, so detection falls to HTTP's 15 s
instead of SWIM's ~2 s; a host whose SWIM socket is wedged but whose HTTP
server still answers (or the reverse) is alive forever; and two answers that
disagree flap in and out of the scheduler's view, each flap re-queuing work.
With one authority the answer is consistent and as fast as SWIM.  HTTP is
only consulted while SWIM is not started or reports itself unhealthy, and
``check_and_recover`` restarts SWIM so the fallback is temporary.

Peers that speak no SWIM (HTTP-mode hosts during a host-by-host rollout or
rollback) are the exception: SWIM can say nothing about them, so whatever the
authority, a peer whose heartbeats say ``"swim": false`` is alive while they
arrive (within PEER_TIMEOUT).  For a peer that speaks SWIM, SWIM alone decides,
so detection stays SWIM's (the rule is ``membership/mixed.py``, shared with
MEMBERSHIP_MODE=swim).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ringrift_fleet.errors import FleetError
from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.membership.base import (
    SWIM_RECOVERED,
    ListenerSet,
    MembershipEvent,
    MembershipListener,
    MembershipSummary,
    cancel_task,
)
from ringrift_fleet.membership.http import HttpHeartbeatMembership
from ringrift_fleet.membership.mixed import HttpOnlyPeers
from ringrift_fleet.membership.swim_adapter import SwimMembershipManager

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # s between authority checks
RECOVER_EVERY = 10.0  # s between check_and_recover calls (itself rate-limited to 5 min)


def choose_authority(swim_started: bool, swim_healthy: bool) -> str:
    """The whole routing rule, kept pure: "swim" or "http"."""
    return "swim" if swim_started and swim_healthy else "http"


class HybridMembershipManager:
    """SWIM with an HTTP-heartbeat fallback, behind one Membership interface."""

    def __init__(self, swim: SwimMembershipManager, http: HttpHeartbeatMembership) -> None:
        self.node_id = swim.node_id
        self.swim = swim
        self.http = http
        self._listeners = ListenerSet()
        self._authority = "http"
        self._task: asyncio.Task[None] | None = None
        # Heartbeats go to every peer (HTTP must be warm when it becomes the authority).
        self.mixed = HttpOnlyPeers(
            http, swim.is_peer_alive, lambda n: swim.peer_metadata(n) is not None
        )
        swim.add_listener(lambda ev: self._forward("swim", ev))
        http.add_listener(lambda ev: self._forward("http", ev))

    @property
    def authority(self) -> str:
        return self._authority

    def _current(self) -> SwimMembershipManager | HttpHeartbeatMembership:
        return self.swim if self._authority == "swim" else self.http

    def _forward(self, source: str, ev: MembershipEvent) -> None:
        # SWIM_RECOVERED is news whoever answers; otherwise only the authority speaks,
        # except about peers only heartbeats can vouch for.
        if ev.kind == SWIM_RECOVERED:
            self._listeners.emit(ev)
            return
        if source == "swim":
            passed = self.mixed.pass_swim_event(ev)  # also notes who speaks SWIM
            if self._authority == "swim" and passed:
                self._listeners.emit(ev)
        elif self._authority == "http" or self.mixed.pass_http_event(ev):
            self._listeners.emit(ev)

    async def start(self) -> None:
        await self.http.start()
        try:
            await self.swim.start()
        except FleetError as exc:  # e.g. the port is taken: HTTP answers meanwhile
            log.error("SWIM did not start, HTTP heartbeats answer: %s", exc)
        self.refresh()
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)
        await self.swim.stop()
        await self.http.stop()

    def refresh(self) -> str:
        """Re-evaluate who answers; on a switch, tell listeners how the view changed."""
        new = choose_authority(self.swim.started, self.swim.is_healthy())
        if new != self._authority:
            before = set(self.get_alive_peers())
            self._authority = new
            after = set(self.get_alive_peers())
            log.warning("membership authority is now %s", new)
            for name in sorted(after - before):
                self._listeners.emit(MembershipEvent("alive", name, 0, {}, time.time()))
            for name in sorted(before - after):
                self._listeners.emit(MembershipEvent("dead", name, 0, {}, time.time()))
        return new

    async def _watch(self) -> None:
        since_recover = 0.0
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            since_recover += WATCH_INTERVAL
            if since_recover >= RECOVER_EVERY:
                since_recover = 0.0
                try:
                    await self.swim.check_and_recover()
                except Exception:  # recovery must never kill the watcher
                    log.exception("SWIM recovery check failed")
            self.refresh()

    # --- the Membership interface --------------------------------------------------------------

    def is_peer_alive(self, name: str) -> bool:
        if self._current().is_peer_alive(name):
            return True
        return self._authority == "swim" and self.mixed.alive_over_http(name)

    def get_alive_peers(self) -> list[str]:
        alive = set(self._current().get_alive_peers())
        if self._authority == "swim":
            alive |= set(self.mixed.extra_alive())
        return sorted(alive)

    def get_membership_summary(self) -> MembershipSummary:
        summary = self._current().get_membership_summary().copy()
        if self._authority == "swim":
            summary = self.mixed.add_to_summary(summary, len(self.get_alive_peers()) + 1)
        summary["authority"] = self._authority
        summary["swim_alive_count"] = len(self.swim.get_alive_peers()) + 1
        summary["http_alive_count"] = len(self.http.get_alive_peers()) + 1
        return summary

    def add_listener(self, callback: MembershipListener) -> None:
        self._listeners.add(callback)

    def peer_metadata(self, name: str) -> JSONMapping | None:
        meta = self._current().peer_metadata(name)
        if meta is None and self._authority == "swim" and self.mixed.http_only(name):
            return self.http.peer_metadata(name)
        return meta

    def set_local_metadata(self, metadata: JSONMapping) -> None:
        self.swim.set_local_metadata(metadata)
        self.http.set_local_metadata(metadata)

    def get_swim_health(self) -> dict[str, object]:
        health = dict(self.swim.get_swim_health())
        health["authority"] = self._authority
        health["http"] = self.http.get_swim_health()
        return health

    async def check_and_recover(self) -> bool:
        recovered = await self.swim.check_and_recover()
        self.refresh()
        return recovered
