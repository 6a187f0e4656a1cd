"""A task message the broker forgot (what an asynchronous-replication failover does
to the newest writes): the leader sends it again, same attempt, same fence, and the
job runs once.

Real redis-server, the real Beat on an in-memory ledger, and a real CPU worker that
is started only after the message was removed (so the loss cannot race a delivery).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from ringrift_fleet.execution.app import create_app
from ringrift_fleet.execution.broker import LostMessages
from ringrift_fleet.execution.dispatch import send_job
from ringrift_fleet.execution.fencing import SLOT_PREFIX
from ringrift_fleet.models import JobStatus, JobType
from ringrift_fleet.scheduler.beat import Beat
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import BoardConfig, Host
from ringrift_fleet.training import TrainingThresholds
from tests.support.celery_worker import config_for, fleet_env, start_cpu_worker
from tests.support.memory_ledger import MemoryLedger
from tests.support.procs import stop
from tests.support.redis_server import start_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NO_TRAINING = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)


def test_a_message_lost_by_the_broker_is_sent_again_under_the_same_attempt(
    tmp_path: Path,
) -> None:
    import redis

    server = start_redis(tmp_path / "redis")
    worker = None
    try:
        env = fleet_env(server.url, tmp_path)
        app = create_app(config_for(env))
        r = redis.Redis.from_url(server.url)
        led = MemoryLedger("leader")
        sent: list[tuple[str, int, str]] = []

        def send(job_type: JobType, kwargs: Any, *, queue: str, job_id: str, fence: Any) -> str:
            sent.append((job_id, int(fence["attempt"]), str(fence["token"])))
            return send_job(job_type, kwargs, queue=queue, job_id=job_id, fence=fence, app=app)

        def read(task_id: str) -> tuple[str, Any]:
            res = AsyncResult(task_id, app=app)
            st = res.state
            return st, (res.result if st in ("SUCCESS", "FAILURE", "REVOKED") else None)

        pol = SchedulerPolicy(
            configs=(BoardConfig.parse("hex8_2p"),),
            thresholds=NO_TRAINING,
            prefetch=0.0,
            queue_ahead_s=0.0,
            games_per_job=2,
        )
        b = Beat(
            ledger=led,
            leadership=led,
            redis=r,
            policy=pol,
            hosts=lambda: [Host(node_id="w1", slots=1)],
            send=send,
            read_result=read,
        )
        b.lost_messages = LostMessages(r, grace_s=1.0, cache_s=0.0)
        b.tick()
        (job,) = [w.work_id for w in led.items()]
        assert len(sent) == 1
        queue = "node.w1"
        slot = r.get(f"{SLOT_PREFIX}{job}#1")
        assert slot is not None and slot.endswith(b"|sent")
        # the failover's loss: the message is gone, the slot still says sent
        assert r.llen(queue) == 1
        r.delete(queue)
        for _ in range(3):  # within the grace: nothing is sent again
            b.tick()
        assert len(sent) == 1
        deadline = time.monotonic() + 10
        while len(sent) == 1 and time.monotonic() < deadline:
            b.tick()
            time.sleep(0.2)
        assert len(sent) == 2, "the lost message was never sent again"
        assert sent[1] == sent[0]  # same job, same attempt, same fence token
        assert r.llen(queue) == 1
        assert led.current(job).attempt == 1  # type: ignore[union-attr]
        for _ in range(10):  # no further copies while it waits in its queue
            b.tick()
        assert len(sent) == 2
        worker = start_cpu_worker("w1", env, tmp_path)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            b.tick()
            if led.get(job).status is JobStatus.COMPLETED:  # type: ignore[union-attr]
                break
            time.sleep(0.3)
        assert led.get(job).status is JobStatus.COMPLETED  # type: ignore[union-attr]
        assert int(r.get(f"ringrift:deliveries:{job}:1") or 0) == 1  # ran once
        assert any("message lost by the broker" in e for _t, e in b.events)
    finally:
        if worker is not None:
            stop(worker.proc, timeout=15)
        server.stop()
