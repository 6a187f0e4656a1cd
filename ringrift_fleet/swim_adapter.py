"""The seed's module path ``app.p2p.swim_adapter``, as ``ringrift_fleet.swim_adapter``.

A thin re-export: the code lives in ``ringrift_fleet.membership`` (the SWIM
state machine in ``membership/swim/``, the managers beside it).
"""

from __future__ import annotations

from ringrift_fleet.membership.hybrid import HybridMembershipManager
from ringrift_fleet.membership.swim.protocol import SwimConfig
from ringrift_fleet.membership.swim_adapter import RECOVERY_MIN_INTERVAL, SwimMembershipManager

__all__ = [
    "RECOVERY_MIN_INTERVAL",
    "HybridMembershipManager",
    "SwimConfig",
    "SwimMembershipManager",
]
