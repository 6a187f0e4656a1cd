# mypy: disallow-any-explicit
"""Peers that speak only HTTP, seen from a node that runs SWIM: the mixed-mode rule.

During a host-by-host rollout (or rollback) some hosts run HTTP heartbeats and
some SWIM.  SWIM can say nothing about a host that does not speak it, so a SWIM
or hybrid node keeps an :class:`HttpHeartbeatMembership` beside SWIM and:

* counts a peer whose heartbeats say ``"swim": false`` alive while they arrive
  (within PEER_TIMEOUT), whatever SWIM holds about it (it left SWIM on rollback);
* leaves every peer that speaks SWIM to SWIM alone, so detection stays SWIM's
  (about 2 s) and two views never flap against each other;
* forgets a peer's "no SWIM" as soon as SWIM hears it join (rolled forward).

Both :class:`~ringrift_fleet.membership.swim_adapter.SwimMembershipManager`
(MEMBERSHIP_MODE=swim, with ``attach_http``) and
:class:`~ringrift_fleet.membership.hybrid.HybridMembershipManager` (while SWIM
is its authority) apply this one rule; the functions here are its whole logic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ringrift_fleet.membership.base import MemberInfo, MembershipEvent, MembershipSummary

if TYPE_CHECKING:
    from ringrift_fleet.membership.http import HttpHeartbeatMembership


class HttpOnlyPeers:
    """The HTTP-only peers beside a SWIM view (``swim_alive`` and ``swim_knows`` ask it)."""

    def __init__(
        self,
        http: HttpHeartbeatMembership,
        swim_alive: Callable[[str], bool],
        swim_knows: Callable[[str], bool],
    ) -> None:
        self.http = http
        self.swim_alive = swim_alive
        self.swim_knows = swim_knows
        http.speaks_swim = True

    def http_only(self, name: str) -> bool:
        """``name`` speaks no SWIM: its last heartbeat (or answer) said so, or an older
        peer that says nothing is one SWIM never heard of."""
        said = self.http.peer_speaks_swim(name)
        if said is None:
            return not self.swim_knows(name)
        return not said

    def alive_over_http(self, name: str) -> bool:
        return self.http_only(name) and self.http.is_peer_alive(name)

    def extra_alive(self) -> list[str]:
        """HTTP-only peers alive by heartbeats that SWIM does not hold alive."""
        return [
            n for n in self.http.get_alive_peers() if self.http_only(n) and not self.swim_alive(n)
        ]

    def wants_heartbeat(self, name: str) -> bool:
        """Beat to a peer SWIM does not hold alive (an HTTP-only one, or one not joined yet)."""
        return not self.swim_alive(name)

    def pass_swim_event(self, ev: MembershipEvent) -> bool:
        """Forward this SWIM event?  Not a death of a peer whose heartbeats still arrive."""
        if ev.kind in ("join", "alive"):
            self.http.mark_speaks_swim(ev.node)
        return not (ev.kind in ("suspect", "dead", "left") and self.alive_over_http(ev.node))

    def pass_http_event(self, ev: MembershipEvent) -> bool:
        """Forward this heartbeat event?  Only about HTTP-only peers SWIM does not hold."""
        return self.http_only(ev.node) and not self.swim_alive(ev.node)

    def add_to_summary(self, summary: MembershipSummary, alive_count: int) -> MembershipSummary:
        """``summary`` (SWIM's) with the HTTP-only peers alive by heartbeats added."""
        extra = self.extra_alive()
        out = summary.copy()
        if extra:
            members = dict(out["members"])
            theirs = self.http.get_membership_summary()["members"]
            for n in extra:
                # every peer alive by heartbeats is in the heartbeat summary
                base: MemberInfo = theirs.get(n) or {"state": "", "incarnation": 0, "metadata": {}}
                members[n] = {**base, "state": "alive", "via": "http"}
            out["members"] = members
            out["alive_count"] = alive_count
            out["dead_count"] = sum(1 for m in members.values() if m.get("state") == "dead")
        out["http_only_peers"] = extra
        return out
