"""Redis-side guards that make a job execute once, whatever the broker and leaders do.

Keys (all strings; ``<id>`` is the job id):

``ringrift:fence:<id>``
    The fence token of the job's current attempt.  The scheduler calls
    :func:`publish_fence` *before* sending an attempt.  A worker refuses (status
    ``"refused"``, no work) a job carrying a fence whose token differs from the
    published one, or whose published fence has gone: that copy belongs to an
    attempt a leader has since replaced.  Jobs sent without a fence (ad-hoc
    ``celery call``) skip this check.
``ringrift:run:<id>``
    The run lease: JSON ``{"owner", "host", "pid", "token", "attempt"}`` set with
    ``SET NX PX`` (:func:`claim_run`) and renewed by a heartbeat thread
    (:class:`LeaseKeeper`) while the job runs.  A second copy finds it held and
    waits until the lease lapses (its worker died) or refuses if the holder keeps
    renewing.  A copy whose fence is the published one takes over a lease held by
    a stale attempt at once, and a lease held by a dead process on this same host
    is taken over without waiting for its expiry.
``ringrift:done:<id>``
    The stored result of the run that completed (:func:`complete_run`, which also
    checks the fence).  A later copy of the job returns it without re-running.
``ringrift:deliveries:<id>:<attempt>``
    How many times this attempt was started.  Past ``MAX_REDELIVERIES`` the job is
    failed with a clear message instead of killing another worker.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis

PREFIX = "ringrift"


def fence_key(job_id: str) -> str:
    return f"{PREFIX}:fence:{job_id}"


def run_key(job_id: str) -> str:
    return f"{PREFIX}:run:{job_id}"


def done_key(job_id: str) -> str:
    return f"{PREFIX}:done:{job_id}"


def deliveries_key(job_id: str, attempt: int) -> str:
    return f"{PREFIX}:deliveries:{job_id}:{attempt}"


def publish_fence(client: redis.Redis, job_id: str, token: str, ttl: float) -> None:
    """Make ``token`` the only fence a worker will accept for ``job_id`` (for ``ttl`` s)."""
    client.set(fence_key(job_id), token, px=max(1, int(ttl * 1000)))


def current_fence(client: redis.Redis, job_id: str) -> str | None:
    raw = client.get(fence_key(job_id))
    return None if raw is None else _text(raw)


def fence_refusal(client: redis.Redis, job_id: str, token: str | None) -> str | None:
    """Why a job carrying ``token`` must not run, or None when it may."""
    if token is None:
        return None
    published = current_fence(client, job_id)
    if published is None:
        return f"job {job_id}: no fence is published for it (attempt withdrawn or expired)"
    if published != token:
        return f"job {job_id}: fence token {token!r} is stale (current attempt has another)"
    return None


def count_delivery(client: redis.Redis, job_id: str, attempt: int, ttl: float) -> int:
    """Count one more start of this attempt; returns the count including this one."""
    key = deliveries_key(job_id, attempt)
    pipe = client.pipeline()
    pipe.incr(key)
    pipe.expire(key, max(1, int(ttl)))
    return int(pipe.execute()[0])


@cache
def host_identity() -> str:
    """This machine (hostname + boot id): a PID means something only on its own boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "?"
    return f"{socket.gethostname()}/{boot}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _eval(client: redis.Redis, script: str, keys: list[str], *args: str) -> Any:
    """Run a Lua script (the synchronous client; typed loosely by redis-py)."""
    result: Any = client.eval(script, len(keys), *keys, *args)
    return result


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


_CLAIM = """
local done = redis.call('GET', KEYS[2])
if done then return {'done', done} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'claimed', ''} end
local holder = redis.call('GET', KEYS[1]) or ''
if ARGV[3] ~= '' and holder ~= '' then
  local fence = redis.call('GET', KEYS[3])
  local ok, held = pcall(cjson.decode, holder)
  if fence == ARGV[3] and ok and held['token'] ~= ARGV[3] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return {'claimed', holder}
  end
end
if ARGV[4] ~= '' and holder == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'claimed', holder}
end
return {'held', holder, tostring(redis.call('PTTL', KEYS[1]))}
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_COMPLETE = """
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then return 'fenced' end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 'lost' end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 'ok'
end
redis.call('DEL', KEYS[1])
return 'duplicate'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """Outcome of :func:`claim_run`: ``claimed``, ``done`` (with ``result``) or ``held``."""

    status: str
    lease: str = ""  # our lease value when claimed
    result: dict[str, Any] | None = None
    holder: dict[str, Any] | None = None
    ttl_ms: int = 0


def new_lease(owner: str, token: str | None, attempt: int) -> str:
    return json.dumps(
        {
            "owner": owner,
            "host": host_identity(),
            "pid": os.getpid(),
            "token": token or "",
            "attempt": attempt,
            "nonce": uuid.uuid4().hex,
        },
        sort_keys=True,
    )


def claim_run(
    client: redis.Redis,
    job_id: str,
    *,
    owner: str,
    token: str | None,
    attempt: int,
    ttl: float,
) -> Claim:
    """Try once to take the run lease (see the module docstring for the rules)."""
    lease = new_lease(owner, token, attempt)
    keys = [run_key(job_id), done_key(job_id), fence_key(job_id)]
    px = str(max(1, int(ttl * 1000)))
    out = _eval(client, _CLAIM, keys, lease, px, token or "", "")
    status = _text(out[0])
    if status == "done":
        return Claim("done", result=json.loads(_text(out[1])))
    if status == "claimed":
        return Claim("claimed", lease=lease)
    holder_raw = _text(out[1])
    holder = _parse_holder(holder_raw)
    if holder and holder.get("host") == host_identity() and not _pid_alive(int(holder["pid"])):
        # Its process is gone on this very host: no need to wait for the lease to lapse.
        out = _eval(client, _CLAIM, keys, lease, px, token or "", holder_raw)
        status = _text(out[0])
        if status == "done":
            return Claim("done", result=json.loads(_text(out[1])))
        if status == "claimed":
            return Claim("claimed", lease=lease)
    return Claim("held", holder=holder, ttl_ms=int(_text(out[2])) if len(out) > 2 else 0)


def _parse_holder(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "pid" in value else None


def wait_and_claim(
    client: redis.Redis,
    job_id: str,
    *,
    owner: str,
    token: str | None,
    attempt: int,
    ttl: float,
    poll: float = 0.25,
) -> Claim:
    """Claim, waiting (bounded) for a dead holder's lease to lapse.

    Returns ``held`` when the holder keeps renewing (it is alive and running the
    job): the caller refuses this copy.
    """
    deadline = time.monotonic() + ttl * 2 + 2
    last_ttl: int | None = None
    while True:
        claim = claim_run(client, job_id, owner=owner, token=token, attempt=attempt, ttl=ttl)
        if claim.status != "held":
            return claim
        renewed = last_ttl is not None and claim.ttl_ms > last_ttl + int(poll * 1000)
        if renewed or time.monotonic() >= deadline:
            return claim
        last_ttl = claim.ttl_ms
        time.sleep(poll)


def renew_run(client: redis.Redis, job_id: str, lease: str, ttl: float) -> bool:
    return bool(_eval(client, _RENEW, [run_key(job_id)], lease, str(max(1, int(ttl * 1000)))))


def release_run(client: redis.Redis, job_id: str, lease: str) -> None:
    """Drop our lease without a result (the job failed): a retry may run at once."""
    _eval(client, _RELEASE, [run_key(job_id)], lease)


def complete_run(
    client: redis.Redis,
    job_id: str,
    lease: str,
    result: dict[str, Any],
    *,
    token: str | None,
    expires: float,
) -> str:
    """Store the result once: ``ok``, or ``fenced`` / ``lost`` / ``duplicate`` (discarded)."""
    keys = [run_key(job_id), done_key(job_id), fence_key(job_id)]
    out = _eval(
        client, _COMPLETE, keys, lease, json.dumps(result), str(max(1, int(expires))), token or ""
    )
    return _text(out)


def stored_result(client: redis.Redis, job_id: str) -> dict[str, Any] | None:
    raw = client.get(done_key(job_id))
    return None if raw is None else json.loads(_text(raw))


class LeaseKeeper:
    """Renews a run lease from a thread; ``lost`` is set when another copy took it."""

    def __init__(self, client: redis.Redis, job_id: str, lease: str, ttl: float) -> None:
        self.client, self.job_id, self.lease, self.ttl = client, job_id, lease, ttl
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = max(0.05, self.ttl / 3)
        while not self._stop.wait(interval):
            try:
                if not renew_run(self.client, self.job_id, self.lease, self.ttl):
                    self.lost.set()
                    return
            except redis.RedisError:
                continue  # transient: the next beat tries again before the lease lapses
