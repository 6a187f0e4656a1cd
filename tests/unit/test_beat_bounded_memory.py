"""The leader's per-job memory ends with the job (fleet soak: coordinator RSS grew with
every finished job).

The lost-message check notes when a sent attempt's message is out of its queue with
no run lease yet (a worker has taken it and not started it).  A job that starts or
ends before the next look never clears that note itself; the leader must drop it,
or a coordinator keeps one entry per such job for as long as it runs.

Real redis-server, the real Beat on the in-memory ledger; the result backend is a dict.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from ringrift_fleet.execution.broker import LostMessages
from ringrift_fleet.execution.dispatch import task_id_for
from ringrift_fleet.models import JobStatus, JobType
from tests.support.memory_ledger import Clock, MemoryLedger, TaskStates, finish, selfplay_beat

pytestmark = pytest.mark.timeout(60)


def test_lost_message_notes_of_finished_jobs_are_dropped(redis_server: Any) -> None:
    r = redis.Redis.from_url(redis_server.url)
    clock = Clock(1000.0)
    ledger = MemoryLedger("leader")
    backend: TaskStates = {}
    beat = selfplay_beat(ledger, r, clock, slots={"a": 1}, backend=backend)
    lost = LostMessages(r, grace_s=30.0, cache_s=0.0, clock=clock)
    beat.lost_messages = lost
    finished = 0
    for _ in range(20):  # bounded: 20 jobs, three ticks each
        clock.t += 1.0
        beat.tick()  # places and sends the next job
        (job,) = [w.work_id for w in ledger.items() if w.status.is_active]
        current = ledger.current(job)
        assert current is not None
        clock.t += 1.0
        beat.tick()  # out of the queue, no run lease yet: noted
        assert task_id_for(job, current.attempt) in lost._missing
        finish(ledger, backend, job, games=2)
        clock.t += 1.0
        beat.tick()  # it finished before the next look
        w = ledger.get(job)
        assert w is not None and w.status is JobStatus.COMPLETED and w.work_type is JobType.SELFPLAY
        finished += 1
    assert finished == 20
    assert len(lost._missing) <= 1  # at most the job placed in the last tick, not one per job
