"""A stale attempt's stored result never answers a newer attempt (real redis-server).

The race: a new leader reads attempt 1 as live, decides to re-place it, and
between that read and deleting attempt 1's fence, attempt 1 completes and
writes ``ringrift:done:<job>`` (its fence was still the published one).  The
leader then voids attempt 1 in the ledger and sends attempt 2.  Attempt 2 must
run afresh: answering it ``duplicate`` with attempt 1's result (and attempt
1's token) would give the ledger a result it refuses forever (stale fence).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from ringrift_fleet.execution import fencing as f

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def r(redis_server: Any) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def _result(token: str, attempt: int) -> dict[str, Any]:
    return {"status": "completed", "attempt": attempt, "fence": {"token": token}}


def test_a_stale_done_never_answers_a_new_attempt(r: redis.Redis) -> None:
    f.publish_fence(r, "j", "t1:j:a1", ttl=60)
    old = f.claim_run(r, "j", owner="w1", token="t1:j:a1", attempt=1, ttl=60)
    assert old.status == "claimed"
    # the leader has read attempt 1 as live; before it deletes the fence, attempt 1 ends
    done = f.complete_run(r, "j", old.lease, _result("t1:j:a1", 1), token="t1:j:a1", expires=60)
    assert done == "ok"
    # the leader goes on: fence withdrawn, attempt 2 placed under a new token
    r.delete(f.fence_key("j"))
    f.publish_fence(r, "j", "t2:j:a2", ttl=60)
    new = f.claim_run(r, "j", owner="w2", token="t2:j:a2", attempt=2, ttl=60)
    assert new.status == "claimed", new  # not "done" with attempt 1's result
    assert (
        f.complete_run(r, "j", new.lease, _result("t2:j:a2", 2), token="t2:j:a2", expires=60)
        == "ok"
    )
    stored = f.stored_result(r, "j")
    assert stored is not None and stored["fence"]["token"] == "t2:j:a2"
    # a redelivered copy of attempt 2 gets attempt 2's result; attempt 1's copy is refused
    again = f.claim_run(r, "j", owner="w3", token="t2:j:a2", attempt=2, ttl=60)
    assert again.status == "done" and again.result == stored
    late = f.claim_run(r, "j", owner="w4", token="t1:j:a1", attempt=1, ttl=60)
    assert late.status == "refused"


def test_a_stale_done_written_while_the_new_attempt_runs_is_replaced(r: redis.Redis) -> None:
    # the other order: attempt 2 claimed already (its fence published), and attempt 1's
    # done shows up anyway (written before the fence moved, seen only now)
    f.publish_fence(r, "j", "t2:j:a2", ttl=60)
    new = f.claim_run(r, "j", owner="w2", token="t2:j:a2", attempt=2, ttl=60)
    assert new.status == "claimed"
    r.set(f.done_key("j"), '{"status": "completed", "fence": {"token": "t1:j:a1"}}')
    out = f.complete_run(r, "j", new.lease, _result("t2:j:a2", 2), token="t2:j:a2", expires=60)
    assert out == "ok"  # not "duplicate" with attempt 1's token
    stored = f.stored_result(r, "j")
    assert stored is not None and stored["fence"]["token"] == "t2:j:a2"


def test_publishing_a_new_fence_clears_an_older_attempts_result(r: redis.Redis) -> None:
    f.publish_fence(r, "j", "t1:j:a1", ttl=60)
    r.set(f.done_key("j"), '{"status": "completed", "fence": {"token": "t1:j:a1"}}')
    f.publish_fence(r, "j", "t1:j:a1", ttl=60)  # the same attempt again: kept
    assert f.stored_result(r, "j") is not None
    f.publish_fence(r, "j", "t2:j:a2", ttl=60)
    assert f.stored_result(r, "j") is None


def test_unfenced_jobs_keep_their_stored_result(r: redis.Redis) -> None:
    a = f.claim_run(r, "u", owner="a", token=None, attempt=1, ttl=30)
    assert f.complete_run(r, "u", a.lease, {"status": "completed"}, token=None, expires=60) == "ok"
    again = f.claim_run(r, "u", owner="b", token=None, attempt=1, ttl=30)
    assert again.status == "done"
