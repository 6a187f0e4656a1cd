"""The broker dies in the middle of a send, stays down 10 s, comes back.

Real redis-server and a real Celery worker; the beat (the real one, on the real
ledger state machine in this process) reaches the broker through a TCP proxy the
test takes down, the worker reaches Redis directly.  Asserts: the attempt whose
send failed is neither lost nor burned (sent again under the same attempt),
every placed job is on the broker within one tick of the broker's return, each
job runs once, and the outage gives a handful of log lines, no traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.result import AsyncResult

from ringrift_fleet.execution.app import create_app
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
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NO_TRAINING = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = start_redis(tmp_path / "redis")
    proxy = TcpProxy(server.port)
    env = fleet_env(server.url, tmp_path)
    worker = None
    try:
        worker = start_cpu_worker("w1", env, tmp_path)
        yield {
            "proxy": proxy,
            "app": create_app(config_for({**env, "RINGRIFT_BROKER_URL": proxy.url})),
            "via_proxy": redis.Redis.from_url(proxy.url, socket_timeout=2),
            "redis": redis.Redis.from_url(server.url),
        }
    finally:
        if worker is not None:
            stop(worker.proc, timeout=15)
        proxy.close()
        server.stop()


def unsent(led: MemoryLedger, r: redis.Redis) -> list[str]:
    """Placed attempts whose slot is not marked sent."""
    out = []
    for w in led.items():
        if w.status is not JobStatus.CLAIMED:
            continue
        cur = led.current(w.work_id)
        assert cur is not None
        slot = r.get(f"{SLOT_PREFIX}{w.work_id}#{cur.attempt}")
        if slot is None or not slot.endswith(b"|sent"):
            out.append(w.work_id)
    return out


def test_a_send_the_broker_fails_is_sent_after_it_returns(
    outage: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy, app, r = outage["proxy"], outage["app"], outage["redis"]
    led = MemoryLedger("leader")
    sent: list[tuple[str, int]] = []
    calls = {"n": 0}

    def send(job_type: JobType, kwargs: Any, *, queue: str, job_id: str, fence: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 3:
            proxy.down()  # the broker dies in the middle of this send
        task = send_job(job_type, kwargs, queue=queue, job_id=job_id, fence=fence, app=app)
        sent.append((job_id, int(fence["attempt"])))
        return task

    def read(task_id: str) -> tuple[str, Any]:
        res = AsyncResult(task_id, app=app)
        st = res.state
        return st, (res.result if st in ("SUCCESS", "FAILURE", "REVOKED") else None)

    pol = SchedulerPolicy(
        configs=(BoardConfig.parse("hex8_2p"),),
        thresholds=NO_TRAINING,
        prefetch=1.0,
        games_per_job=2,
    )
    b = Beat(
        ledger=led,
        leadership=led,
        redis=outage["via_proxy"],
        policy=pol,
        hosts=lambda: [Host(node_id="w1", slots=2)],
        send=send,
        read_result=read,
    )
    b.tick()  # places 4 jobs (2 slots + prefetch 2); the third send fails mid-way
    placed = sorted(w.work_id for w in led.items())
    assert len(placed) == 4
    assert len(sent) == 2 and b.sends_deferred >= 1
    assert b.last.error is None  # a broker error is not a failed tick
    down_until = time.monotonic() + 10
    while time.monotonic() < down_until:  # ten seconds of ticks against a dead broker
        b.tick()
        time.sleep(0.3)
    assert b.broker_status()["up"] is False
    assert len(unsent(led, r)) == 2  # still placed, still the first attempt
    proxy.up()
    b.tick()  # one tick after the broker is back: everything placed is sent
    assert unsent(led, r) == [], unsent(led, r)
    for job_id in placed:
        cur = led.current(job_id)
        assert cur is not None and cur.attempt == 1, (job_id, cur)  # no attempt burned
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        b.tick()
        if all(led.get(j).status is JobStatus.COMPLETED for j in placed):  # type: ignore[union-attr]
            break
        time.sleep(0.3)
    assert all(led.get(j).status is JobStatus.COMPLETED for j in placed)  # type: ignore[union-attr]
    for job_id in placed:
        assert int(r.get(f"ringrift:deliveries:{job_id}:1") or 0) == 1, job_id
    assert len(sent) == len(set(sent))  # each attempt reached the broker once
    ours = [rec for rec in caplog.records if rec.name.startswith("ringrift_fleet")]
    assert not [rec for rec in ours if rec.exc_info or rec.levelno >= logging.ERROR]
    broker_lines = [rec.getMessage() for rec in ours if "broker" in rec.getMessage()]
    print(f"\n{len(broker_lines)} broker log lines over a 10 s outage: {broker_lines}")
    assert b.broker.lines == len(broker_lines) <= 6, broker_lines
