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
    is taken over without waiting for its expiry.  A running copy whose lease
    lapsed unclaimed (the broker out longer than the TTL) takes it again at its
    next renewal, if its fence still stands and no result is stored.
``ringrift:done:<id>``
    The stored result of the run that completed (:func:`complete_run`, which also
    checks the fence).  A later copy of the job returns it without re-running.
``ringrift:deliveries:<id>:<attempt>``
    How many times this attempt was started.  Past ``MAX_REDELIVERIES`` the job is
    failed with a clear message instead of killing another worker.
``ringrift:slot:<id>#<attempt>`` (scheduler side)
    The send slot: ``"<leader fence>|claimed"`` taken with ``SET NX`` before a
    leader sends an attempt, then ``"<leader fence>|sent"``.  Two leaders (or one
    that restarted) never both send the same attempt.  The leader takes it and
    publishes the attempt's fence in one script (:func:`claim_slot_and_publish_fence`):
    a refused slot leaves the fence as it was.
``ringrift:notified:<event>`` (scheduler side)
    A webhook notification's dedupe mark: one message per event across leaders.
``ringrift:revoke:<id>`` (a pub/sub channel)
    :func:`withdraw_fence` deletes the fence and publishes the withdrawn token here,
    in one step.  A worker running the job listens while it runs
    (:class:`LeaseKeeper`) and stops within a fraction of a second; the renewal
    every ``RUN_LEASE_TTL``/3 also checks the fence, so a missed message costs at
    most that long.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
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


SLOT_PREFIX = f"{PREFIX}:slot:"
NOTIFIED_PREFIX = f"{PREFIX}:notified:"


def slot_key(job_id: str, attempt: int) -> str:
    return f"{SLOT_PREFIX}{job_id}#{attempt}"


def notified_key(event: str) -> str:
    return f"{NOTIFIED_PREFIX}{event}"


def revoke_channel(job_id: str) -> str:
    return f"{PREFIX}:revoke:{job_id}"


def withdraw_fence(
    client: redis.Redis, job_id: str, token: str | None = None
) -> dict[str, Any] | None:
    """Void the job's live attempt: no fence (its copies are refused, its result is
    discarded) and a revocation its running worker hears at once.

    Unless that attempt (``token``) has already finished: then its stored result is
    returned and nothing is voided.  One script, so a worker's finish
    (:func:`complete_run`, which checks the fence) and the withdrawal are ordered:
    either the result was stored first and the leader takes it, or the fence went
    first and the result is refused -- never a result stored *and* the job placed
    again (a job run twice when a host was declared dead as its job finished)."""
    raw = _eval(
        client,
        _WITHDRAW,
        [fence_key(job_id), done_key(job_id)],
        token or "",
        revoke_channel(job_id),
    )
    if raw is None:
        return None
    try:
        value = json.loads(_text(raw))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def lease_states(client: redis.Redis, job_ids: list[str]) -> dict[str, bool]:
    """For each job: is its run lease held or its result stored (True), or neither?"""
    if not job_ids:
        return {}
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(run_key(job_id), done_key(job_id))
    return {j: bool(n) for j, n in zip(job_ids, pipe.execute(), strict=True)}


def publish_fence(client: redis.Redis, job_id: str, token: str, ttl: float) -> None:
    """Make ``token`` the only fence a worker will accept for ``job_id`` (for ``ttl`` s).

    A result another attempt stored is dropped in the same step: the ledger refuses
    it (its token is not the current one), so it must not answer this attempt."""
    keys = [fence_key(job_id), done_key(job_id)]
    _eval(client, _PUBLISH, keys, token, str(max(1, int(ttl * 1000))))


def claim_slot_and_publish_fence(
    client: redis.Redis,
    job_id: str,
    attempt: int,
    slot_value: str,
    slot_ttl: int,
    token: str,
    fence_ttl: float,
    *,
    mark: Sequence[tuple[str, int]] = (),
    marked_value: str = "",
) -> bool:
    """Take the attempt's send slot (``SET NX``) and publish ``token`` as its fence, in
    one round trip (one script): False, with no fence written, when the slot is held
    with another value (another leader's, or already marked sent).  A slot already
    holding ``slot_value`` (our own send that failed) counts as taken.  The fence is
    :func:`publish_fence`'s: another attempt's stored result is dropped with it.

    ``mark``: ``(job, attempt)`` slots whose send returned, set to ``marked_value``
    first in the same script (``SET XX``: only slots that still exist), whatever
    the claim's outcome; the previous send's "sent" mark rides along this way."""
    keys = [slot_key(job_id, attempt), fence_key(job_id), done_key(job_id)]
    keys += [slot_key(j, a) for j, a in mark]
    ttl_ms = str(max(1, int(fence_ttl * 1000)))
    args = (slot_value, str(max(1, slot_ttl)), token, ttl_ms, marked_value)
    return bool(_eval(client, _CLAIM_SLOT, keys, *args))


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


FINISH_RETRY_S = 60.0  # how long a finished job's result waits for an unreachable broker
CLAIM_RETRY_S = 30.0  # how long a job about to start waits for an unreachable broker
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


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


_scripts: dict[tuple[int, str], Any] = {}


def _eval(client: redis.Redis, script: str, keys: list[str], *args: str) -> Any:
    """Run a Lua script by its SHA (EVALSHA; redis-py reloads it after a server restart)."""
    key = (id(client), script)
    runner = _scripts.get(key)
    if runner is None:
        runner = _scripts[key] = client.register_script(script)
    return runner(keys=keys, args=list(args), client=client)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


# The fence token a stored result was produced under ('' when none).
_DONE_TOKEN = """
local function done_token(raw)
  local ok, v = pcall(cjson.decode, raw)
  if ok and type(v) == 'table' and type(v['fence']) == 'table' then
    local t = v['fence']['token']
    if type(t) == 'string' then return t end
  end
  return ''
end
"""

# KEYS: fence, done.  ARGV: token, ttl ms.
_PUBLISH = (
    _DONE_TOKEN
    + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local done = redis.call('GET', KEYS[2])
if done and done_token(done) ~= ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""
)

# KEYS: fence, done.  ARGV: the live attempt's token ('' = unknown), revoke channel.
# The attempt's stored result when it finished under that token (nothing voided);
# else the fence is deleted, the revocation published, and nil returned.
_WITHDRAW = (
    _DONE_TOKEN
    + """
local done = redis.call('GET', KEYS[2])
if done and ARGV[1] ~= '' and done_token(done) == ARGV[1] then return done end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'withdrawn')
return false
"""
)

# KEYS: slot, fence, done, slots to mark sent…  ARGV: slot value, slot ttl s, token,
# fence ttl ms, sent value.  The marks; then the slot: refused (0) before the fence
# is written; then _PUBLISH's two steps.
_CLAIM_SLOT = (
    _DONE_TOKEN
    + """
for i = 4, #KEYS do redis.call('SET', KEYS[i], ARGV[5], 'XX', 'EX', ARGV[2]) end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
local done = redis.call('GET', KEYS[3])
if done and done_token(done) ~= ARGV[3] then redis.call('DEL', KEYS[3]) end
return 1
"""
)

# KEYS: run, done, fence, deliveries.  ARGV: lease, ttl ms, token, dead holder, count ttl s.
# A stored result under another token belongs to an attempt a leader voided (the race:
# it completed between the leader reading it and withdrawing its fence): dropped, and
# this attempt runs afresh instead of being answered with a result the ledger refuses.
_CLAIM = (
    _DONE_TOKEN
    + """
if ARGV[3] ~= '' then
  local fence = redis.call('GET', KEYS[3])
  if not fence then return {'refused', 'missing'} end
  if fence ~= ARGV[3] then return {'refused', 'stale'} end
end
local done = redis.call('GET', KEYS[2])
if done then
  if ARGV[3] == '' or done_token(done) == ARGV[3] then return {'done', done} end
  redis.call('DEL', KEYS[2])
end
local took = ''
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local holder = redis.call('GET', KEYS[1]) or ''
  local stale = false
  if ARGV[3] ~= '' and holder ~= '' then
    local ok, held = pcall(cjson.decode, holder)
    stale = ok and type(held) == 'table' and held['token'] ~= ARGV[3]
  end
  if not stale and not (ARGV[4] ~= '' and holder == ARGV[4]) then
    return {'held', holder, tostring(redis.call('PTTL', KEYS[1]))}
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  took = holder
end
local n = 0
if ARGV[5] ~= '' then
  n = redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
return {'claimed', took, tostring(n)}
"""
)

# KEYS: run, fence, done.  ARGV: lease, ttl ms, token ('' = unfenced).  -1: the fence
# moved.  A lease that lapsed while nobody else took it (the broker was out longer
# than the TTL, or a failover lost the write) is ours again while the fence is still
# ours and no copy of this attempt stored a result (an older attempt's result does
# not count, as in claiming): otherwise the running copy stops, and the redelivered
# copy of the same attempt starts its work again from the beginning.
_RENEW = (
    _DONE_TOKEN
    + """
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if holder then return 0 end
local done = redis.call('GET', KEYS[3])
if done and (ARGV[3] == '' or done_token(done) == ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
"""
)

# A stored result under another token is an older (voided) attempt's: replaced.
_COMPLETE = (
    _DONE_TOKEN
    + """
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then return 'fenced' end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 'lost' end
local done = redis.call('GET', KEYS[2])
if done and (ARGV[4] == '' or done_token(done) == ARGV[4]) then
  redis.call('DEL', KEYS[1])
  return 'duplicate'
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[1])
return 'ok'
"""
)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """Outcome of :func:`claim_run`: ``claimed``, ``done`` (with ``result``), ``held`` or
    ``refused`` (with ``reason``: the job's fence is stale or gone)."""

    status: str
    lease: str = ""  # our lease value when claimed
    result: dict[str, Any] | None = None
    holder: dict[str, Any] | None = None
    ttl_ms: int = 0
    deliveries: int = 0  # starts of this attempt, this one included (when counted)
    reason: str = ""
    holder_raw: str = ""


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


def _refusal(job_id: str, token: str | None, kind: str) -> str:
    if kind == "missing":
        return f"job {job_id}: no fence is published for it (attempt withdrawn or expired)"
    return f"job {job_id}: fence token {token!r} is stale (current attempt has another)"


def claim_run(
    client: redis.Redis,
    job_id: str,
    *,
    owner: str,
    token: str | None,
    attempt: int,
    ttl: float,
    count_ttl: float | None = None,
) -> Claim:
    """Try once to take the run lease, in one round trip: check the fence, return a
    stored result, take the lease (or a stale attempt's), count the delivery when
    ``count_ttl`` is given.  See the module docstring for the rules."""
    lease = new_lease(owner, token, attempt)
    keys = [run_key(job_id), done_key(job_id), fence_key(job_id), deliveries_key(job_id, attempt)]
    px = str(max(1, int(ttl * 1000)))
    count = "" if count_ttl is None else str(max(1, int(count_ttl)))

    def attempt_claim(dead_holder: str) -> Claim:
        out = _eval(client, _CLAIM, keys, lease, px, token or "", dead_holder, count)
        status = _text(out[0])
        if status == "refused":
            return Claim("refused", reason=_refusal(job_id, token, _text(out[1])))
        if status == "done":
            return Claim("done", result=json.loads(_text(out[1])))
        if status == "claimed":
            return Claim("claimed", lease=lease, deliveries=int(_text(out[2])))
        raw = _text(out[1])
        return Claim("held", holder=_parse_holder(raw), ttl_ms=int(_text(out[2])), holder_raw=raw)

    claim = attempt_claim("")
    holder = claim.holder
    if (
        claim.status == "held"
        and holder
        and holder.get("host") == host_identity()
        and not _pid_alive(int(holder["pid"]))
    ):
        # Its process is gone on this very host: no need to wait for the lease to lapse.
        claim = attempt_claim(claim.holder_raw)
    return claim


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
    count_ttl: float | None = None,
    poll: float = 0.25,
    unreachable_s: float = CLAIM_RETRY_S,
) -> Claim:
    """Claim, waiting (bounded) for a dead holder's lease to lapse.

    Returns ``held`` when the holder keeps renewing (it is alive and running the
    job): the caller refuses this copy.  A broker that does not answer (a failover:
    seconds) is waited for up to ``unreachable_s``, instead of failing the attempt
    before it started.
    """
    deadline = time.monotonic() + ttl * 2 + 2
    unreachable_until = time.monotonic() + unreachable_s
    last_ttl: int | None = None
    while True:
        try:
            claim = claim_run(
                client,
                job_id,
                owner=owner,
                token=token,
                attempt=attempt,
                ttl=ttl,
                count_ttl=count_ttl,
            )
        except _UNREACHABLE:
            if time.monotonic() >= unreachable_until:
                raise
            time.sleep(0.5)
            deadline = max(deadline, time.monotonic() + ttl * 2 + 2)
            continue
        if claim.status != "held":
            return claim
        renewed = last_ttl is not None and claim.ttl_ms > last_ttl + int(poll * 1000)
        if renewed or time.monotonic() >= deadline:
            return claim
        last_ttl = claim.ttl_ms
        time.sleep(poll)


def renew_run(
    client: redis.Redis, job_id: str, lease: str, ttl: float, token: str | None = None
) -> bool:
    """Extend our lease (taking it again if it lapsed unclaimed); False when another
    copy took it, a copy stored the result, or (fenced) the fence moved."""
    keys = [run_key(job_id), fence_key(job_id), done_key(job_id)]
    out = _eval(client, _RENEW, keys, lease, str(max(1, int(ttl * 1000))), token or "")
    return int(out) > 0


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


def finish_run(
    client: redis.Redis,
    job_id: str,
    lease: str,
    result: dict[str, Any],
    *,
    token: str | None,
    expires: float,
    replicate: Callable[[], Any] | None = None,
    retry_s: float = FINISH_RETRY_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """:func:`complete_run` for a job that has run: retried (bounded) while the broker
    is unreachable, then ``replicate`` (``WAIT 1``) once the result is stored.

    A broker failover takes seconds; a job that finished in them would otherwise
    fail, and its work (hours of GPU) be placed and run again.  Retrying is safe:
    the script checks the fence and the lease each time, so an attempt the leader
    voided meanwhile is still refused.  A retry that finds our own result already
    stored (the first try ran but its answer was lost) reports ``ok``.  After
    ``replicate`` the stored result is on a replica: a failover from then on keeps
    it, and the leader reads it even if Celery's ``SUCCESS`` is lost."""
    deadline = clock() + retry_s
    tries = 0
    while True:
        tries += 1
        try:
            outcome = complete_run(client, job_id, lease, result, token=token, expires=expires)
            if outcome == "duplicate" and tries > 1:
                mine = json.loads(json.dumps(result))
                outcome = "ok" if stored_result(client, job_id) == mine else outcome
            break
        except _UNREACHABLE:
            if clock() >= deadline:
                raise
            sleep(0.5)
    if outcome == "ok" and replicate is not None:
        replicate()
    return outcome


def stored_result(client: redis.Redis, job_id: str) -> dict[str, Any] | None:
    raw = client.get(done_key(job_id))
    return None if raw is None else json.loads(_text(raw))


def stored_results(client: redis.Redis, tokens: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The results stored by the attempts ``tokens`` names (job id -> fence token), in
    one round trip; a job whose stored result is another attempt's (or none) is left out.

    The run store is written before Celery's result backend (:func:`complete_run`,
    then the task returns), so a broker failover can keep a job's ``done`` key and
    lose its ``SUCCESS``: the leader then reads the result from here."""
    if not tokens:
        return {}
    ids = list(tokens)
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.get(done_key(job_id))
    out: dict[str, dict[str, Any]] = {}
    for job_id, raw in zip(ids, pipe.execute(), strict=True):
        if raw is None:
            continue
        try:
            value = json.loads(_text(raw))
        except ValueError:
            continue
        fence = value.get("fence") if isinstance(value, dict) else None
        if isinstance(fence, dict) and fence.get("token") == tokens[job_id]:
            out[job_id] = value
    return out


class LeaseKeeper:
    """Renews a run lease from a thread; ``lost`` is set when another copy took it or
    (a fenced job) the leader withdrew its attempt.

    With a token it also listens on the job's revocation channel, so a withdrawn
    attempt learns of it within ``LISTEN_POLL_S`` instead of at the next renewal.
    """

    LISTEN_POLL_S = 0.1
    RETRY_S = 0.5  # between renewals while the broker does not answer

    def __init__(
        self, client: redis.Redis, job_id: str, lease: str, ttl: float, token: str | None = None
    ) -> None:
        self.client, self.job_id, self.lease, self.ttl = client, job_id, lease, ttl
        self.token = token or None
        self.lost = threading.Event()
        self.revoked = threading.Event()  # lost because the fence moved (not a takeover)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)]
        if self.token:
            self._threads.append(
                threading.Thread(target=self._listen, name=f"revoke-{job_id}", daemon=True)
            )

    def __enter__(self) -> LeaseKeeper:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _revoked(self) -> None:
        self.revoked.set()
        self.lost.set()

    def _fence_moved(self) -> bool:
        return current_fence(self.client, self.job_id) != self.token

    def _run(self) -> None:
        interval = max(0.05, self.ttl / 3)
        wait = interval
        while not self._stop.wait(wait):
            try:
                if not renew_run(self.client, self.job_id, self.lease, self.ttl, self.token):
                    if self.token and self._fence_moved():
                        self._revoked()
                    self.lost.set()
                    return
                wait = interval
            except redis.RedisError:
                # the broker is out: try again soon, so the lease is back (renewed, or
                # taken again if it lapsed) within RETRY_S of the broker's return --
                # before the leader, which re-places a job whose lease stays gone a
                # few seconds, takes this live run for a dead worker's
                wait = min(interval, self.RETRY_S)

    def _listen(self) -> None:
        """Hear a revocation at once (pub/sub); reconnects, bounded by the job's run."""
        while not self._stop.is_set() and not self.lost.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(revoke_channel(self.job_id))
                # a withdrawal published before we subscribed: seen here
                if self._fence_moved():
                    self._revoked()
                    return
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=self.LISTEN_POLL_S)
                    if msg is not None and self._fence_moved():
                        self._revoked()
                        return
            except redis.RedisError:
                self._stop.wait(0.5)  # broker trouble: the renewal keeps the lease meanwhile
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
