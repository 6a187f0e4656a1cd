"""A job that starts or finishes while the broker fails over keeps its attempt and its
result (real redis-server).

Before: ``complete_run`` met a refused connection (the primary just died, Sentinel
had not promoted yet), the task failed with ``ConnectionError``, the leader
counted a failed attempt and the whole job ran again.  Now the result waits
(bounded) for the broker to answer, is stored once, and is confirmed on a replica
(``WAIT 1``) before Celery is told.  Likewise a job whose claim meets the dead
primary waits (bounded) for the new one instead of failing an attempt that never ran.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from ringrift_fleet.execution import fencing as f
from tests.support.procs import wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

TOKEN = "t1:j:a1"


def _result() -> dict[str, Any]:
    return {"status": "completed", "attempt": 1, "fence": {"token": TOKEN}, "games": 2}


@pytest.fixture
def proxy(redis_server: Any) -> Any:
    p = TcpProxy(redis_server.port)
    yield p
    p.close()


def test_a_result_finished_during_an_outage_is_stored_when_the_broker_is_back(
    redis_server: Any, proxy: TcpProxy
) -> None:
    direct = redis.Redis.from_url(redis_server.url)
    r = redis.Redis.from_url(proxy.url, socket_timeout=2, socket_connect_timeout=1)
    f.publish_fence(r, "j", TOKEN, ttl=60)
    claim = f.claim_run(r, "j", owner="w", token=TOKEN, attempt=1, ttl=30)
    assert claim.status == "claimed"
    proxy.down()  # the primary is gone; a replica is promoted a moment later
    back = threading.Timer(1.5, proxy.up)
    back.start()
    waits: list[int] = []
    try:
        outcome = f.finish_run(
            r, "j", claim.lease, _result(), token=TOKEN, expires=60,
            replicate=lambda: waits.append(1), retry_s=20,
        )  # fmt: skip
    finally:
        back.join()
    assert outcome == "ok"
    assert f.stored_result(direct, "j") == _result()
    assert waits == [1]  # confirmed on a replica once stored
    assert direct.get(f.run_key("j")) is None


def test_a_retry_that_finds_its_own_result_already_stored_is_ok(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first try ran on the server and its reply was lost (a timeout)."""
    r = redis.Redis.from_url(redis_server.url)
    f.publish_fence(r, "j", TOKEN, ttl=60)
    claim = f.claim_run(r, "j", owner="w", token=TOKEN, attempt=1, ttl=30)
    real = f.complete_run
    outcomes: list[str] = []

    def reply_lost_once(*args: Any, **kw: Any) -> str:
        outcomes.append(real(*args, **kw))
        if len(outcomes) == 1:
            raise redis.TimeoutError("reply lost")
        return outcomes[-1]

    monkeypatch.setattr(f, "complete_run", reply_lost_once)
    out = f.finish_run(
        r, "j", claim.lease, _result(), token=TOKEN, expires=60, sleep=lambda s: None
    )
    assert outcomes == ["ok", "duplicate"]  # stored by the first try
    assert out == "ok"  # ... and it is ours: a completed run, not a duplicate copy


def test_an_attempt_voided_during_the_outage_is_still_refused(
    redis_server: Any, proxy: TcpProxy
) -> None:
    direct = redis.Redis.from_url(redis_server.url)
    r = redis.Redis.from_url(proxy.url, socket_timeout=2, socket_connect_timeout=1)
    f.publish_fence(r, "j", TOKEN, ttl=60)
    claim = f.claim_run(r, "j", owner="w", token=TOKEN, attempt=1, ttl=30)
    proxy.down()
    f.withdraw_fence(direct, "j")  # the leader placed it again meanwhile
    back = threading.Timer(1.0, proxy.up)
    back.start()
    waits: list[int] = []
    try:
        outcome = f.finish_run(
            r, "j", claim.lease, _result(), token=TOKEN, expires=60,
            replicate=lambda: waits.append(1), retry_s=20,
        )  # fmt: skip
    finally:
        back.join()
    assert outcome == "fenced" and waits == []
    assert f.stored_result(direct, "j") is None


def test_a_broker_that_stays_away_fails_the_task_after_the_bound(
    redis_server: Any, proxy: TcpProxy
) -> None:
    r = redis.Redis.from_url(proxy.url, socket_timeout=1, socket_connect_timeout=0.5)
    f.publish_fence(r, "j", TOKEN, ttl=60)
    claim = f.claim_run(r, "j", owner="w", token=TOKEN, attempt=1, ttl=30)
    proxy.down()
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(redis.ConnectionError):
        f.finish_run(
            r, "j", claim.lease, _result(), token=TOKEN, expires=60,
            retry_s=5, sleep=sleep, clock=lambda: now[0],
        )  # fmt: skip
    assert now[0] >= 5


def test_a_job_about_to_start_waits_out_the_outage_instead_of_failing(
    redis_server: Any, proxy: TcpProxy
) -> None:
    """Before: the claim met the dead primary, the task failed, an attempt was spent."""
    direct = redis.Redis.from_url(redis_server.url)
    r = redis.Redis.from_url(proxy.url, socket_timeout=2, socket_connect_timeout=1)
    f.publish_fence(direct, "j", TOKEN, ttl=60)
    proxy.down()
    back = threading.Timer(1.5, proxy.up)
    back.start()
    try:
        claim = f.wait_and_claim(r, "j", owner="w", token=TOKEN, attempt=1, ttl=3, count_ttl=60)
    finally:
        back.join()
    assert claim.status == "claimed" and claim.deliveries == 1
    assert direct.get(f.run_key("j")) is not None
    proxy.down()
    with pytest.raises(redis.ConnectionError):  # bounded: a broker that stays away fails it
        f.wait_and_claim(r, "k", owner="w", token=None, attempt=1, ttl=3, unreachable_s=1.0)


def test_a_second_copy_of_a_running_attempt_reports_nothing(
    redis_server: Any, fresh_config: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A message restored or sent again around a failover, taken by a second worker
    while the first runs the attempt: before, it stored "refused: running on …" under
    the attempt's task id, and the leader voided the attempt that was running."""
    from celery.exceptions import Ignore

    from ringrift_fleet.config import reload_p2p_config
    from ringrift_fleet.execution.tasks import execute

    fresh_config.setenv("RINGRIFT_BROKER_URL", redis_server.url)
    fresh_config.setenv("RINGRIFT_P2P_STATE_DIR", str(tmp_path / "state"))
    fresh_config.setenv("RINGRIFT_P2P_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    fresh_config.setenv("RINGRIFT_P2P_RUN_LEASE_TTL", "1")
    reload_p2p_config()
    r = redis.Redis.from_url(redis_server.url)
    f.publish_fence(r, "j", TOKEN, ttl=60)
    first = f.claim_run(r, "j", owner="gpu0", token=TOKEN, attempt=1, ttl=1)
    copy = SimpleNamespace(request=SimpleNamespace(id="j.a1", hostname="gpu1"))
    kwargs = {"board_type": "hex8", "num_players": 2, "num_games": 1, "job_id": "j"}
    with f.LeaseKeeper(r, "j", first.lease, 1, TOKEN):  # the first copy runs
        with pytest.raises(Ignore):
            execute(copy, "selfplay", {**kwargs, "fence": {"token": TOKEN, "attempt": 1}})
        assert r.get(f.run_key("j")) == first.lease.encode()  # untouched
        # another attempt's copy is still refused, with a reason
        stale = execute(copy, "selfplay", {**kwargs, "fence": {"token": "t9:j:a2", "attempt": 2}})
        assert stale["status"] == "refused" and "stale" in stale["reason"]


def test_only_a_worker_retries_its_result_backend_through_an_outage() -> None:
    """Celery storing STARTED or SUCCESS meets the dead primary: a worker's backend
    retries (bounded) instead of erroring the task; the coordinator's reads, whose
    tick retries them anyway, still fail fast (no tracebacks per retry in its log)."""
    from ringrift_fleet.config import load_config
    from ringrift_fleet.execution.app import create_app
    from ringrift_fleet.execution.tasks import BACKEND_RETRIES

    app = create_app(load_config({"RINGRIFT_BROKER_URL": "redis://127.0.0.1:1/0"}))
    app.AsyncResult("j.a1")  # what the coordinator does: the app is never finalized
    assert not app.conf.result_backend_always_retry
    assert "ringrift.selfplay" in app.tasks  # a worker (or `celery call`) finalizes it
    assert app.conf.result_backend_always_retry
    assert app.conf.result_backend_max_retries == BACKEND_RETRIES
    assert app.conf.result_backend_max_sleep_between_retries_ms == 1000


def _keeper_through_an_outage(
    redis_server: Any, proxy: TcpProxy, during: Any = None
) -> tuple[f.LeaseKeeper, redis.Redis, str]:
    """A running copy's keeper (lease TTL 1 s) meets a broker outage of 2.5 s: its
    lease lapses in Redis meanwhile; ``during(direct)`` runs inside the outage."""
    direct = redis.Redis.from_url(redis_server.url)
    r = redis.Redis.from_url(proxy.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    f.publish_fence(direct, "j", TOKEN, ttl=60)
    claim = f.claim_run(r, "j", owner="w1", token=TOKEN, attempt=1, ttl=1)
    assert claim.status == "claimed"
    keeper = f.LeaseKeeper(r, "j", claim.lease, 1, TOKEN).__enter__()
    proxy.down()
    assert wait_for(lambda: direct.get(f.run_key("j")) is None, 3)  # lapsed
    if during is not None:
        during(direct)
    time.sleep(1.0)
    proxy.up()
    return keeper, direct, claim.lease


def test_a_lease_that_lapsed_in_an_outage_is_taken_again_by_its_running_copy(
    redis_server: Any, proxy: TcpProxy
) -> None:
    """The broker out longer than the run lease's TTL: the running copy takes its
    lease again within a second of the broker's return and keeps running; a
    redelivered copy of the same attempt then finds it held (before: the running
    copy stopped, and the redelivered one started the work again)."""
    keeper, direct, lease = _keeper_through_an_outage(redis_server, proxy)
    try:
        assert wait_for(lambda: direct.get(f.run_key("j")) == lease.encode(), 1.5)
        assert not keeper.lost.is_set()
        again = f.claim_run(direct, "j", owner="w1", token=TOKEN, attempt=1, ttl=1)
        assert again.status == "held"
        time.sleep(1.5)  # renewed since, not just set once
        assert direct.get(f.run_key("j")) == lease.encode() and not keeper.lost.is_set()
    finally:
        keeper.__exit__(None, None, None)


@pytest.mark.parametrize(
    "what",
    ["another copy claimed it", "the leader placed a new attempt", "a copy stored the result"],
)
def test_a_lapsed_lease_is_not_taken_again_when_anything_moved_meanwhile(
    redis_server: Any, proxy: TcpProxy, what: str
) -> None:
    def during(direct: redis.Redis) -> None:
        if what == "another copy claimed it":
            other = f.claim_run(direct, "j", owner="w2", token=TOKEN, attempt=1, ttl=30)
            assert other.status == "claimed"
        elif what == "the leader placed a new attempt":
            f.publish_fence(direct, "j", "t2:j:a2", ttl=60)
        else:
            direct.set(f.done_key("j"), json.dumps(_result()))  # this attempt's

    keeper, direct, lease = _keeper_through_an_outage(redis_server, proxy, during)
    try:
        assert wait_for(keeper.lost.is_set, 3)
        assert keeper.revoked.is_set() == (what == "the leader placed a new attempt")
        assert direct.get(f.run_key("j")) != lease.encode()
    finally:
        keeper.__exit__(None, None, None)


def test_an_older_attempts_stored_result_does_not_stop_a_lapsed_copy(
    redis_server: Any, proxy: TcpProxy
) -> None:
    """Claiming and completing ignore a result stored under another attempt's token;
    so does taking a lapsed lease again."""

    def during(direct: redis.Redis) -> None:
        direct.set(f.done_key("j"), json.dumps({"status": "completed", "fence": {"token": "t0"}}))

    keeper, direct, lease = _keeper_through_an_outage(redis_server, proxy, during)
    try:
        assert wait_for(lambda: direct.get(f.run_key("j")) == lease.encode(), 1.5)
        assert not keeper.lost.is_set()
    finally:
        keeper.__exit__(None, None, None)
