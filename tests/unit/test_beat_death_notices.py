"""A new leader announces the hosts that are dead now, not every death it saw while
it followed.

In the 30-host soak a leader change sent "Host offline" webhooks for four hosts that
were up: deaths (and returns) seen while following piled up until the first tick as
leader.  The real Beat on the in-memory ledger; notifications go to a list.
"""

from __future__ import annotations

from typing import Any

from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.scheduler.beat import NOTIFY_HANDOFF_S, Beat
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import BoardConfig, Host
from ringrift_fleet.training import TrainingThresholds
from tests.support.memory_ledger import Clock, MemoryLedger

NEVER = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)


def test_a_new_leader_announces_only_hosts_dead_now_and_not_yet_announced() -> None:
    clock = Clock(1000.0)
    ledger = MemoryLedger("b", leading=False)
    sent: list[dict[str, Any]] = []
    beat = Beat(
        ledger=ledger,
        leadership=ledger,
        policy=SchedulerPolicy(configs=(BoardConfig.parse("hex8_2p"),), thresholds=NEVER),
        hosts=lambda: [Host(node_id=h, slots=1) for h in ("b", "c")],
        send=lambda *a, **k: "",
        read_result=lambda task_id: ("PENDING", None),
        notify=lambda **kw: sent.append(kw),
        clock=clock,
    )

    def event(kind: str, node: str) -> None:
        beat.on_membership(MembershipEvent(kind, node, 1, {}, clock.t))

    event("dead", "old")  # died long ago and stays dead: the leader then announced it
    event("dead", "flap")  # died and came back while we followed
    beat.tick()
    clock.t += 2.0
    event("alive", "flap")
    clock.t += NOTIFY_HANDOFF_S
    beat.tick()
    event("dead", "leader")  # the leader itself: nobody announced it; we take over
    clock.t += 1.0
    ledger.leading = True
    beat.tick()
    assert [n["details"]["node"] for n in sent if n["event_type"] == "node_offline"] == ["leader"]
