"""One leader placing self-play on host ``a`` (one slot) through the real Beat, on the
in-memory ledger and a real redis-server; Celery's result backend is a dict, so a
test can lose exactly the write it means to, or say any task state it likes."""

from __future__ import annotations

from typing import Any

import redis

from ringrift_fleet.execution import fencing
from ringrift_fleet.execution.broker import LostMessages
from ringrift_fleet.models import JobStatus, JobType
from ringrift_fleet.scheduler.beat import Beat
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import BoardConfig, Host
from ringrift_fleet.training import TrainingThresholds
from tests.support.memory_ledger import Clock, MemoryLedger

NEVER = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)


class Fleet:
    """One leader placing self-play on host ``a`` (one slot), a dict for a backend."""

    def __init__(self, r: redis.Redis, **policy: Any) -> None:
        self.r = r
        self.clock = Clock(1000.0)
        self.ledger = MemoryLedger("leader")
        self.backend: dict[str, tuple[str, Any]] = {}
        self.sent: list[tuple[str, int]] = []
        policy = SchedulerPolicy(
            configs=(BoardConfig.parse("hex8_2p"),),
            thresholds=NEVER,
            prefetch=0.0,
            queue_ahead_s=0.0,
            lease_grace_s=2.0,
            **policy,
        )
        self.beat = Beat(
            ledger=self.ledger,
            leadership=self.ledger,
            redis=r,
            policy=policy,
            hosts=lambda: [Host(node_id="a", slots=1)],
            send=self.send,
            read_result=lambda task_id: self.backend.get(task_id, ("PENDING", None)),
            clock=self.clock,
        )
        self.beat.lost_messages = LostMessages(r, grace_s=1.0, cache_s=0.0, clock=self.clock)

    def send(self, job_type: JobType, kwargs: Any, *, queue: str, job_id: str, fence: Any) -> str:
        self.sent.append((job_id, int(fence["attempt"])))
        return f"{job_id}.a{fence['attempt']}"

    def placed(self) -> tuple[str, int, str]:
        self.beat.tick()
        (job,) = [w.work_id for w in self.ledger.items()]
        current = self.ledger.current(job)
        assert current is not None
        return job, current.attempt, current.fence_token

    def start(self, job: str, attempt: int, token: str, ttl: float = 3) -> str:
        """The worker takes the run lease of the attempt; returns the lease."""
        claim = fencing.claim_run(self.r, job, owner="a@cpu", token=token, attempt=attempt, ttl=ttl)
        assert claim.status == "claimed"
        return claim.lease

    def finish(self, job: str, attempt: int, token: str, lease: str) -> tuple[str, dict[str, Any]]:
        """The worker stores its result (fence-checked): the outcome, and the result."""
        result = {
            "job_id": job,
            "attempt": attempt,
            "fence": {"token": token, "attempt": attempt, "term": 1},
            "node": "a",
            "status": "completed",
            "games": 2,
        }
        return fencing.complete_run(self.r, job, lease, result, token=token, expires=60), result

    def run(self, job: str, attempt: int, token: str) -> dict[str, Any]:
        """What the worker does: claim, run, store the result (its Celery SUCCESS is
        the write the failover loses)."""
        outcome, result = self.finish(job, attempt, token, self.start(job, attempt, token))
        assert outcome == "ok"
        return result

    def ticks(self, n: int, step: float = 1.0) -> None:
        for _ in range(n):
            self.clock.t += step
            self.beat.tick()


def status_of(f: Fleet, job: str) -> JobStatus:
    w = f.ledger.get(job)
    assert w is not None
    return w.status
