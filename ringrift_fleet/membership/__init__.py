"""Who is alive: SWIM (our own, sans-I/O), the optional swim-p2p backend, HTTP heartbeats.

Everything else in the fleet sees only :class:`~ringrift_fleet.membership.base.Membership`.
"""

from ringrift_fleet.membership.base import (
    EVENT_KINDS,
    SWIM_RECOVERED,
    Membership,
    MembershipEvent,
    MembershipListener,
)

__all__ = ["EVENT_KINDS", "SWIM_RECOVERED", "Membership", "MembershipEvent", "MembershipListener"]
