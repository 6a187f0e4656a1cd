"""A config's stage is announced once per stage and host, not at every cursor write."""

from __future__ import annotations

from ringrift_fleet.scheduler.actions import SetState
from ringrift_fleet.scheduler.beat import TickReport
from ringrift_fleet.scheduler.readmodel import RECORD_KIND
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import ConfigState, Stage
from tests.support.memory_ledger import Clock, MemoryLedger, idle_beat


def test_a_training_is_announced_once_however_often_its_cursor_moves() -> None:
    """The leader wrote the config's state at every tick that enqueued self-play (the
    cursor moves) and announced "square8_2p: training on h1" each time: every ~10 s
    in the 30-host soak, in its log and /status events."""
    ledger = MemoryLedger("leader")
    clock = Clock(1_000.0)
    beat = idle_beat(ledger, SchedulerPolicy(), clock)
    training = ConfigState(stage=Stage.TRAINING, target_node="h1")
    steps = [
        training.but(selfplay_seq=1),
        training.but(selfplay_seq=2),
        training.but(selfplay_seq=3),
        training.but(stage=Stage.EVALUATION, selfplay_seq=4),
        training.but(stage=Stage.IDLE, target_node=None, selfplay_seq=5),
        training.but(selfplay_seq=6),  # a new cycle on the same host: announced again
        training.but(target_node="h2", selfplay_seq=7),
    ]
    beat.effects._apply([SetState("square8_2p", s) for s in steps], TickReport(leader=True))
    said = [text for _at, text in beat.events if text.startswith("square8_2p:")]
    assert said == [
        "square8_2p: training on h1",
        "square8_2p: evaluation on h1",
        "square8_2p: training on h1",
        "square8_2p: training on h2",
    ]
    assert ledger.records(RECORD_KIND)["square8_2p"]["selfplay_seq"] == 7
