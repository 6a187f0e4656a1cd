"""Fences, run leases and stored results against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import redis

from ringrift_fleet.execution import fencing as f
from tests.support.procs import PYTHON, REPO, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def r(redis_server: Any) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_fence_check(r: redis.Redis) -> None:
    assert f.fence_refusal(r, "j", None) is None  # ad-hoc jobs carry no fence
    assert "no fence is published" in (f.fence_refusal(r, "j", "t1") or "")
    f.publish_fence(r, "j", "t1", ttl=30)
    assert f.fence_refusal(r, "j", "t1") is None
    f.publish_fence(r, "j", "t2", ttl=30)  # the next attempt replaces it
    assert "stale" in (f.fence_refusal(r, "j", "t1") or "")


def test_run_once_then_stored_result(r: redis.Redis) -> None:
    a = f.claim_run(r, "j", owner="a", token=None, attempt=1, ttl=30)
    assert a.status == "claimed"
    b = f.claim_run(r, "j", owner="b", token=None, attempt=1, ttl=30)
    assert b.status == "held" and b.holder is not None and b.holder["owner"] == "a"
    assert (
        f.complete_run(r, "j", a.lease, {"status": "completed", "n": 1}, token=None, expires=60)
        == "ok"
    )
    c = f.claim_run(r, "j", owner="c", token=None, attempt=1, ttl=30)
    assert c.status == "done" and c.result == {"status": "completed", "n": 1}
    assert r.get(f.run_key("j")) is None


def test_new_attempt_takes_over_and_old_result_is_refused(r: redis.Redis) -> None:
    f.publish_fence(r, "j", "old", ttl=60)
    old = f.claim_run(r, "j", owner="w1", token="old", attempt=1, ttl=60)
    assert old.status == "claimed"
    f.publish_fence(r, "j", "new", ttl=60)  # the leader re-enqueued under attempt 2
    new = f.claim_run(r, "j", owner="w2", token="new", attempt=2, ttl=60)
    assert new.status == "claimed"  # no waiting for the stale lease
    assert not f.renew_run(r, "j", old.lease, 60)  # the old run notices it lost
    assert (
        f.complete_run(r, "j", old.lease, {"status": "completed"}, token="old", expires=60)
        == "fenced"
    )
    assert (
        f.complete_run(r, "j", new.lease, {"status": "completed", "a": 2}, token="new", expires=60)
        == "ok"
    )
    assert f.stored_result(r, "j") == {"status": "completed", "a": 2}


def test_dead_holder_on_this_host_is_taken_over_at_once(r: redis.Redis, redis_server: Any) -> None:
    code = (
        "import redis; from ringrift_fleet.execution import fencing as f;"
        f"c = redis.Redis.from_url({redis_server.url!r});"
        "print(f.claim_run(c, 'j', owner='dead', token=None, attempt=1, ttl=300).status)"
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert out.stdout.strip() == "claimed"  # and that process has exited since
    assert r.pttl(f.run_key("j")) > 200_000
    started = time.monotonic()
    claim = f.wait_and_claim(r, "j", owner="me", token=None, attempt=1, ttl=300)
    assert claim.status == "claimed" and time.monotonic() - started < 2


def test_lease_of_a_lost_host_lapses_and_a_live_holder_keeps_it(r: redis.Redis) -> None:
    other_host = json.dumps({"owner": "x", "host": "elsewhere/boot", "pid": 1, "token": ""})
    r.set(f.run_key("gone"), other_host, px=1500)  # its heartbeat stopped
    started = time.monotonic()
    claim = f.wait_and_claim(r, "gone", owner="me", token=None, attempt=1, ttl=1.5)
    assert claim.status == "claimed" and 1.0 < time.monotonic() - started < 5

    live = f.claim_run(r, "busy", owner="runner", token=None, attempt=1, ttl=1.0)
    with f.LeaseKeeper(r, "busy", live.lease, 1.0) as keeper:
        started = time.monotonic()
        second = f.wait_and_claim(r, "busy", owner="copy", token=None, attempt=1, ttl=1.0)
        assert second.status == "held" and time.monotonic() - started < 4.5
        assert not keeper.lost.is_set()
        r.set(f.run_key("busy"), "someone else", px=5000)
        assert wait_for(keeper.lost.is_set, 3)


def test_delivery_count_and_release(r: redis.Redis) -> None:
    assert [f.count_delivery(r, "j", 1, 60) for _ in range(3)] == [1, 2, 3]
    assert f.count_delivery(r, "j", 2, 60) == 1
    c = f.claim_run(r, "k", owner="a", token=None, attempt=1, ttl=60)
    f.release_run(r, "k", "not-my-lease")
    assert r.get(f.run_key("k")) is not None
    f.release_run(r, "k", c.lease)
    assert f.claim_run(r, "k", owner="b", token=None, attempt=1, ttl=60).status == "claimed"


def test_one_round_trip_claim_checks_the_fence_and_counts(r: redis.Redis) -> None:
    refused = f.claim_run(r, "m", owner="a", token="t1", attempt=1, ttl=30, count_ttl=60)
    assert refused.status == "refused" and "no fence is published" in refused.reason
    f.publish_fence(r, "m", "t2", ttl=30)
    stale = f.claim_run(r, "m", owner="a", token="t1", attempt=1, ttl=30, count_ttl=60)
    assert stale.status == "refused" and "'t1' is stale" in stale.reason
    assert r.get(f.deliveries_key("m", 1)) is None  # refused copies are not counted
    ok = f.claim_run(r, "m", owner="a", token="t2", attempt=2, ttl=30, count_ttl=60)
    assert ok.status == "claimed" and ok.deliveries == 1
    held = f.claim_run(r, "m", owner="b", token="t2", attempt=2, ttl=30, count_ttl=60)
    assert held.status == "held" and int(r.get(f.deliveries_key("m", 2))) == 1


def test_queue_depths_count_every_priority_level(r: redis.Redis) -> None:
    from ringrift_fleet.execution.dispatch import queue_depths

    r.rpush("selfplay.t1", "a", "b")
    r.rpush("selfplay.t1\x06\x163", "c")
    r.rpush("cpu", "d")
    assert queue_depths(r, ["selfplay.t1", "cpu", "training.t1"]) == {
        "selfplay.t1": 3,
        "cpu": 1,
        "training.t1": 0,
    }
