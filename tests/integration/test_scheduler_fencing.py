"""The beat against a real redis-server and real Celery workers.

Two leaders at once, a worker host SIGKILLed mid-job, a leader dying between
taking a slot and sending: each job still executes once, nothing is skipped.
The ledger here is the real ledger state machine in this process
(tests/support/memory_ledger.py); membership's death declaration is delivered
through the same listener SWIM calls.
"""

from __future__ import annotations

import re
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
from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.models import JobStatus, JobType
from ringrift_fleet.scheduler.beat import Beat
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import BoardConfig, Host
from ringrift_fleet.training import TrainingThresholds
from tests.support.celery_worker import config_for, fleet_env, start_cpu_worker
from tests.support.memory_ledger import MemoryLedger, sharing
from tests.support.procs import stop, wait_for
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.integration

NO_TRAINING = TrainingThresholds(MIN_GAMES=10**9, MIN_GAMES_WHEN_STALE=10**9)


def policy(key: str, games_per_job: int = 4) -> SchedulerPolicy:
    return SchedulerPolicy(
        configs=(BoardConfig.parse(key),),
        thresholds=NO_TRAINING,
        prefetch=0.0,
        queue_ahead_s=0.0,
        games_per_job=games_per_job,
    )


class Sent(list[tuple[str, int]]):
    """(job id, attempt) of every send, in order."""


def beat(ledger: MemoryLedger, fleet: dict[str, Any], hosts: Any, pol: SchedulerPolicy) -> Beat:
    app = fleet["app"]
    sent: Sent = fleet.setdefault(f"sent:{ledger.node_id}", Sent())

    def send(job_type: JobType, kwargs: Any, *, queue: str, job_id: str, fence: Any) -> str:
        sent.append((job_id, int(fence["attempt"])))
        return send_job(job_type, kwargs, queue=queue, job_id=job_id, fence=fence, app=app)

    def read(task_id: str) -> tuple[str, Any]:
        r = AsyncResult(task_id, app=app)
        st = r.state
        return st, (r.result if st in ("SUCCESS", "FAILURE", "REVOKED") else None)

    return Beat(
        ledger=ledger,
        leadership=ledger,
        redis=fleet["redis"],
        policy=pol,
        hosts=hosts if callable(hosts) else (lambda: list(hosts)),
        send=send,
        read_result=read,
    )


def host(node: str, slots: int = 2) -> Host:
    return Host(node_id=node, slots=slots)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = start_redis(tmp_path / "redis")
    env = fleet_env(server.url, tmp_path)
    workers = []
    try:
        for name in ("w1", "w2"):
            workers.append(start_cpu_worker(name, env, tmp_path))
        yield {
            "app": create_app(config_for(env)),
            "redis": redis.Redis.from_url(server.url),
            "workers": {w.hostname.split("@")[0]: w for w in workers},
            "artifacts": config_for(env).artifact_dir,
        }
    finally:
        for w in workers:
            stop(w.proc, timeout=15)
        server.stop()


def deliveries(r: redis.Redis, job_id: str) -> int:
    """How many times any attempt of ``job_id`` started on a worker."""
    return sum(int(r.get(k) or 0) for k in r.scan_iter(f"ringrift:deliveries:{job_id}:*"))


def completed(ledger: MemoryLedger) -> dict[str, Any]:
    return {w.work_id: w for w in ledger.items() if w.status is JobStatus.COMPLETED}


def run_ticks(beats: list[Beat], seconds: float, until: Any = None, every: float = 0.3) -> None:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / every) + 1):
        for b in beats:
            b.tick()
        if until is not None and until():
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(every)


@pytest.mark.timeout(180)
def test_two_leaders_schedule_nothing_twice(fleet: dict[str, Any]) -> None:
    r = fleet["redis"]
    # 1. diverged replicas (a deposed leader that has not heard of its successor):
    #    both plan the same jobs from the same state; the broker's SET NX sends each once
    old, new = MemoryLedger("old", term=1), MemoryLedger("new", term=2)
    hosts = [host("w1", 1)]
    a, b = beat(old, fleet, hosts, policy("hex8_2p")), beat(new, fleet, hosts, policy("hex8_2p"))
    a.tick()
    b.tick()
    sent_a, sent_b = fleet["sent:old"], fleet["sent:new"]
    assert sent_a == [("selfplay:hex8_2p:1", 1)]
    assert sent_b == [] and b.slots_refused == 1  # it tried the same slot and was refused
    run_ticks([a, b], 30, until=lambda: "selfplay:hex8_2p:1" in completed(old))
    assert "selfplay:hex8_2p:1" in completed(old)
    # the old leader's result does not complete the new replica's job: other fence
    assert "selfplay:hex8_2p:1" not in completed(new)
    assert deliveries(r, "selfplay:hex8_2p:1") == 1

    # 2. one replicated ledger, a stale term and a current one interleaving
    first = MemoryLedger("c1", term=3)
    second = sharing(first, "c2", term=4)
    hosts2 = [host("w2", 2)]
    pa, pb = policy("square8_2p"), policy("square8_2p")
    c1, c2 = beat(first, fleet, hosts2, pa), beat(second, fleet, hosts2, pb)
    c1.tick()  # the stale leader acts first
    run_ticks([c1, c2], 40, until=lambda: len(completed(first)) >= 6)
    s1, s2 = fleet["sent:c1"], fleet["sent:c2"]
    assert s1 and s2
    assert not set(s1) & set(s2), "a slot was sent by both leaders"
    assert len(s1 + s2) == len(set(s1 + s2))
    # once the newer term wrote, the stale leader's results were refused by term
    assert first.state["term"] == 4
    assert c1.ledger_refusals > 0 or c1.last.refused
    done = completed(first)
    assert len(done) >= 6
    for job_id in done:
        assert deliveries(r, job_id) == 1, job_id
    # every slot key the beats took corresponds to exactly one send
    taken = {k.decode()[len(SLOT_PREFIX) :] for k in r.scan_iter(SLOT_PREFIX + "selfplay:*")}
    assert taken == {f"{j}#{a}" for j, a in s1 + s2 + fleet["sent:old"]}


@pytest.mark.timeout(180)
def test_a_killed_worker_host_has_its_job_finished_elsewhere_once(
    fleet: dict[str, Any],
) -> None:
    r = fleet["redis"]
    led = MemoryLedger("leader")
    alive = {"w1": host("w1", 1), "w2": host("w2", 1)}
    # long jobs: about 600 square19 4-player games each
    b = beat(led, fleet, lambda: list(alive.values()), policy("square19_4p", 5400))
    running_on_w1: list[str] = []

    def started_on_w1() -> bool:
        for w in led.items():
            if w.status is JobStatus.RUNNING and w.claimed_by == "w1":
                running_on_w1.append(w.work_id)
                return True
        return False

    run_ticks([b], 60, until=started_on_w1)
    assert running_on_w1, "no job started on w1"
    job = running_on_w1[0]
    assert wait_for(lambda: r.exists(f"ringrift:run:{job}"), 20)
    stop(fleet["workers"]["w1"].proc, sig=9)  # the host dies mid-job
    del alive["w1"]
    declared = time.monotonic()
    b.on_membership(MembershipEvent("dead", "w1", 1, at=time.time()))
    requeued_after: list[float] = []

    def moved() -> bool:
        cur = led.current(job)
        if cur is not None and cur.node_id == "w2" and not requeued_after:
            requeued_after.append(time.monotonic() - declared)
        return job in completed(led)

    run_ticks([b], 120, until=moved, every=0.25)
    assert requeued_after and requeued_after[0] < 2.0, requeued_after
    item = completed(led)[job]
    assert item.result is not None and item.result["node"] == "w2"
    assert led.current(job).attempt == 2  # type: ignore[union-attr]
    # one result: the killed attempt never reported, the second ran once
    assert int(r.get(f"ringrift:deliveries:{job}:1") or 0) == 1
    assert int(r.get(f"ringrift:deliveries:{job}:2") or 0) == 1
    games = [p for p in Path(fleet["artifacts"]).rglob("*.jsonl.gz") if job in p.name]
    assert len(games) == 1
    assert any("notify node_offline" in text for _, text in b.events)


class LeaderKilled(BaseException):
    """Raised inside a send: the leader process dies there (nothing after it runs)."""


@pytest.mark.timeout(180)
def test_a_leader_dying_mid_plan_is_neither_repeated_nor_skipped(
    fleet: dict[str, Any],
) -> None:
    r = fleet["redis"]
    first = MemoryLedger("c1", term=1)
    hosts = [host("w1", 1), host("w2", 1)]
    a = beat(first, fleet, hosts, policy("hex8_3p"))
    real_send = a.send
    calls = {"n": 0}

    def dying_send(*args: Any, **kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 2:  # slot taken and fence published, then SIGKILL
            raise LeaderKilled
        return real_send(*args, **kwargs)

    a.send = dying_send  # type: ignore[method-assign]
    with pytest.raises(LeaderKilled):
        a.tick()
    # the ledger holds both placed jobs; only the first reached the broker
    placed = sorted(w.work_id for w in first.items())
    assert placed == ["selfplay:hex8_3p:1", "selfplay:hex8_3p:2"]
    second = sharing(first, "c2", term=2)
    b = beat(second, fleet, hosts, policy("hex8_3p"))
    run_ticks([b], 60, until=lambda: len(completed(second)) >= 5)
    done = completed(second)
    assert {"selfplay:hex8_3p:1", "selfplay:hex8_3p:2"} <= set(done)
    # never skipped: the ids are contiguous; never repeated: one execution each
    seqs = sorted(int(re.sub(r".*:", "", w.work_id)) for w in second.items())
    assert seqs == list(range(1, len(seqs) + 1))
    for job_id in done:
        assert deliveries(r, job_id) == 1, job_id
    # the half-sent attempt was given up and the job placed again under attempt 2
    assert second.current("selfplay:hex8_3p:2").attempt == 2  # type: ignore[union-attr]
    sent_b = fleet["sent:c2"]
    assert ("selfplay:hex8_3p:1", 1) not in sent_b
