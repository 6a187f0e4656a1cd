# mypy: disallow-any-explicit
"""SWIM protocol timing, validated once (``SwimConfig``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringrift_fleet.errors import ValidationError
from ringrift_fleet.membership.swim import codec

if TYPE_CHECKING:
    from ringrift_fleet.config import P2PConfig


@dataclass(frozen=True)
class SwimConfig:
    """Protocol timing.  Defaults measured on loopback and in simulation (docs/membership.md)."""

    ping_interval: float = 0.5  # protocol period, s
    ping_timeout: float = 0.2  # direct ack wait before asking others, s
    indirect_probes: int = 3  # k members asked to ping on our behalf
    # minimum suspicion timeout = suspicion_mult × max(1, log10 N) × ping_interval
    suspicion_mult: float = 1.5
    # the timeout starts at suspicion_max_mult × minimum, shrinking with confirmations
    suspicion_max_mult: float = 3.0
    # independent confirmations that bring the timeout down to its minimum (Lifeguard's K;
    # memberlist's default is 2 as well): more is slower to convict, fewer is jumpier
    suspicion_confirmations: int = 2
    # when set, the *longest* suspicion timeout in seconds (the minimum follows from it)
    failure_timeout: float | None = None
    retransmit_mult: float = 3.0  # λ: each update is sent about λ·log10(N+1) times
    sync_interval: float = 5.0  # push-pull digest exchange with a random member, s
    reconnect_interval: float = 5.0  # full sync with a random dead member or seed, s
    dead_retention: float = 1800.0  # dead and left members are forgotten after this, s
    join_retry_initial: float = 0.5  # first join retry, doubling up to join_retry_max, s
    join_retry_max: float = 15.0
    lhm_max: int = 8  # local health multiplier ceiling: period × (1 + score)
    revivals_per_period: int = 8  # pings to dead members a peer reported alive
    max_datagram: int = codec.MAX_DATAGRAM
    # when the direct ping goes unanswered, also ping over TCP (memberlist's fallback):
    # a member that answers there is not suspected, whatever UDP loses
    fallback_probe: bool = True
    # a member that becomes dead to us is pushed to this many random members at once
    # (a ping carrying the verdict first), not only on our next probes: a verdict
    # then spreads in a few round trips instead of a few protocol periods; 0 = off
    verdict_push: int = 3

    def __post_init__(self) -> None:
        positive = (
            "ping_interval",
            "ping_timeout",
            "suspicion_mult",
            "retransmit_mult",
            "sync_interval",
            "reconnect_interval",
            "dead_retention",
            "join_retry_initial",
            "join_retry_max",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValidationError(f"SwimConfig.{name}={value!r}: expected a positive number")
        if self.ping_timeout >= self.ping_interval:
            raise ValidationError(
                f"SwimConfig.ping_timeout={self.ping_timeout!r}: must be below "
                f"ping_interval ({self.ping_interval!r})"
            )
        if self.suspicion_max_mult < 1:
            raise ValidationError(
                f"SwimConfig.suspicion_max_mult={self.suspicion_max_mult!r}: expected >= 1"
            )
        if self.failure_timeout is not None and not self.failure_timeout > 0:
            raise ValidationError(
                f"SwimConfig.failure_timeout={self.failure_timeout!r}: expected a positive number"
            )
        for name in (
            "indirect_probes",
            "suspicion_confirmations",
            "lhm_max",
            "revivals_per_period",
            "verdict_push",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValidationError(f"SwimConfig.{name}={value!r}: expected an integer >= 0")
        if not 256 <= self.max_datagram <= 65000:
            raise ValidationError(
                f"SwimConfig.max_datagram={self.max_datagram!r}: expected 256-65000 bytes"
            )

    @classmethod
    def from_p2p_config(cls, cfg: P2PConfig) -> SwimConfig:
        """The SWIM_* fields of a :class:`~ringrift_fleet.config.P2PConfig` (change
        others with ``dataclasses.replace``)."""
        return cls(
            ping_interval=cfg.SWIM_PING_INTERVAL,
            ping_timeout=cfg.SWIM_PING_TIMEOUT,
            suspicion_mult=cfg.SWIM_SUSPICION_MULT,
            indirect_probes=cfg.SWIM_INDIRECT_PROBES,
        )

    def suspicion_bounds(self, n: int) -> tuple[float, float]:
        """(minimum, maximum) suspicion timeout for a cluster of ``n`` live members."""
        if self.failure_timeout is not None:
            hi = self.failure_timeout
            return hi / self.suspicion_max_mult, hi
        lo = self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.ping_interval
        return lo, lo * self.suspicion_max_mult

    def retransmits(self, n: int) -> int:
        return max(1, math.ceil(self.retransmit_mult * math.log10(n + 1)))
