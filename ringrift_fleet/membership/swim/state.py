# mypy: disallow-any-explicit
"""What a SWIM node remembers: members, suspicions, counters, and what a step returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.membership.swim.codec import Addr


class FallbackProbe(NamedTuple):
    """An effect: "ping ``target`` at ``addr`` over a channel that is not UDP".

    The shell sends ``payload`` (a sealed PING) over TCP to the target's SWIM
    port and, if a reply comes back within ``timeout`` seconds, hands it to
    :meth:`SwimNode.fallback_ack`; a connection the target's host refuses goes
    to :meth:`SwimNode.fallback_refused`.  Silence needs no call: the probe
    simply ends unacknowledged (docs/membership.md)."""

    seq: int
    target: str
    addr: Addr
    payload: bytes
    timeout: float


class Output(NamedTuple):
    datagrams: list[tuple[Addr, bytes]]
    events: list[MembershipEvent]
    fallback: Sequence[FallbackProbe] = ()


@dataclass(slots=True)
class Suspicion:
    start: float
    lo: float
    hi: float
    k: int  # confirmations that bring the timeout down to ``lo``
    confirmers: set[str]
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self._recompute()

    def confirm(self, origin: str) -> bool:
        if origin in self.confirmers:
            return False
        self.confirmers.add(origin)
        self._recompute()
        return True

    def settle(self, timeout: float) -> None:
        """The suspect is known to be down: at most ``timeout``, confirmations or not."""
        self.k, self.lo = 0, min(self.lo, timeout)
        self._recompute()

    def _recompute(self) -> None:
        c = len(self.confirmers) - 1  # the first suspecter is not a confirmation
        if self.k <= 0 or c <= 0:
            timeout = self.hi if self.k > 0 else self.lo
        else:
            frac = math.log(c + 1) / math.log(self.k + 1)
            timeout = max(self.lo, self.hi - (self.hi - self.lo) * frac)
        self.deadline = self.start + timeout


@dataclass(slots=True)
class Member:
    name: str
    addr: Addr
    incarnation: int
    state: str  # ALIVE | SUSPECT | DEAD | LEFT
    metadata: JSONMapping
    since: float  # when the state last changed (local clock)
    suspicion: Suspicion | None = None
    wire: tuple[tuple[str, int], bytes] | None = None  # cached full-state entry


@dataclass
class Stats:
    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    probe_failures: int = 0
    refutations: int = 0
    full_syncs_sent: int = 0
    fallback_probes: int = 0  # probes that also went out over the fallback channel
    fallback_acks: int = 0  # ... and were answered there (UDP had failed)
    fallback_saves: int = 0  # probes only the fallback answered: a suspicion avoided
    fallback_refusals: int = 0  # ... refused by the target's host: its process is gone
    verdict_pushes: int = 0  # pings sent at once to spread a death we just learned of

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())
