# mypy: disallow-any-explicit
"""The membership interface the rest of the fleet codes against.

Liveness has one source of truth per node (ARCHITECTURE.md); the scheduler, the
status server and the hybrid coordinator see only this protocol, so SWIM, the
swim-p2p backend and HTTP heartbeats are interchangeable behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NotRequired, Protocol, TypedDict, runtime_checkable

from ringrift_fleet.jsontypes import JSONMapping

log = logging.getLogger(__name__)

#: Kinds of :class:`MembershipEvent`.  ``alive`` means "alive again" after a
#: suspicion or death; ``join`` is the first time a member is seen.
EVENT_KINDS = ("join", "suspect", "dead", "alive", "left", "metadata")

#: The kind of the event ``check_and_recover`` emits (about the local node)
#: after it restarted an unhealthy SWIM; it is also logged under this name.
SWIM_RECOVERED = "SWIM_RECOVERED"


@dataclass(frozen=True)
class MembershipEvent:
    """One change a node learned about a member, however it learned it."""

    kind: str  # one of EVENT_KINDS, or SWIM_RECOVERED for the local node
    node: str
    incarnation: int
    metadata: JSONMapping = field(default_factory=dict)
    at: float = 0.0  # wall-clock seconds (time.time()) when this node learned it

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "node": self.node,
            "incarnation": self.incarnation,
            "metadata": dict(self.metadata),
            "at": self.at,
        }


class MemberInfo(TypedDict):
    """One member in :meth:`Membership.get_membership_summary`."""

    state: str  # alive, suspect, dead or left
    incarnation: int
    metadata: JSONMapping
    last_seen_s: NotRequired[float | None]  # HTTP heartbeats: seconds since the last one
    address: NotRequired[str]  # SWIM: host:port
    # SWIM: when (time.time) this node saw the member's state last change; None
    # while it has not changed since this node started
    since: NotRequired[float | None]
    via: NotRequired[str]  # "http": alive by heartbeats only (mixed fleets)


class MembershipSummary(TypedDict):
    """What :meth:`Membership.get_membership_summary` returns (and /status shows)."""

    node_id: str
    backend: str  # swim, swim-p2p or http
    started: bool
    alive_count: int  # live members, this node included
    suspect_count: int
    dead_count: int
    members: dict[str, MemberInfo]
    incarnation: NotRequired[int | None]  # SWIM: this node's
    left_count: NotRequired[int]
    http_only_peers: NotRequired[list[str]]  # mixed fleets: alive by heartbeats only
    authority: NotRequired[str]  # hybrid: which backend decides
    swim_alive_count: NotRequired[int]
    http_alive_count: NotRequired[int]


MembershipListener = Callable[[MembershipEvent], None]


@runtime_checkable
class Membership(Protocol):
    """Who is alive, as one node sees it."""

    node_id: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def is_peer_alive(self, name: str) -> bool: ...

    def get_alive_peers(self) -> list[str]:
        """Names of the members believed alive, excluding this node."""
        ...

    def get_membership_summary(self) -> MembershipSummary:
        """Counts plus, per member, its state, incarnation and metadata."""
        ...

    def add_listener(self, callback: MembershipListener) -> None:
        """Call ``callback`` for every change this node learns, however it learned it."""
        ...

    def peer_metadata(self, name: str) -> JSONMapping | None: ...

    def set_local_metadata(self, metadata: JSONMapping) -> None:
        """Replace this node's metadata; bumps its incarnation so the newest wins."""
        ...

    def get_swim_health(self) -> dict[str, object]: ...


class ListenerSet:
    """Listeners that must not break the loop that notifies them."""

    def __init__(self) -> None:
        self._callbacks: list[MembershipListener] = []

    def add(self, callback: MembershipListener) -> None:
        self._callbacks.append(callback)

    def emit(self, event: MembershipEvent) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:  # a listener's bug must not stop membership
                log.exception("membership listener %r failed on %s", callback, event)


async def cancel_task(task: asyncio.Task[object] | None) -> None:
    """Cancel a manager's background loop and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
