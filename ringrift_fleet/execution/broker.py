"""The broker as the scheduler sees it: which errors are the broker's, how they are
logged, and the one place that knows kombu's Redis layout of unacknowledged messages.

* :data:`BROKER_ERRORS` — exceptions that mean "the broker (Redis) is unreachable
  or failing", as opposed to a bug: redis-py's, kombu's and socket errors.
* :class:`BrokerHealth` — up/down, counts per kind of failure, and at most one log
  line per kind per minute (broker URL with its password masked, and a count), so
  a broker down for an hour gives 60 lines per kind, not a traceback per tick.
* :func:`discard_unacked` — drop a dead worker's unacknowledged copy of an attempt
  the leader has voided.  kombu's Redis transport keeps a delivered, unacked message
  in the hash ``unacked`` (delivery tag → ``[message, exchange, routing key]``) and
  its delivery time in the sorted set ``unacked_index``, and hands it out again only
  after the visibility timeout (hours here).  Removing both entries is exactly what
  kombu's own ack does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"  # kombu.transport.redis.Channel.unacked_key
UNACKED_INDEX_KEY = "unacked_index"  # … .unacked_index_key
LOG_EVERY_S = 60.0
_BACK = "(back)"  # the rate-limit slot of the "broker is back" line


def _broker_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [redis.RedisError, OSError]
    try:
        from kombu.exceptions import OperationalError

        errors.append(OperationalError)
    except ImportError:  # pragma: no cover - kombu ships with celery
        pass
    return tuple(errors)


BROKER_ERRORS: tuple[type[BaseException], ...] = _broker_errors()


def mask_url(url: str) -> str:
    """``redis://:secret@h:6379/0`` → ``redis://:***@h:6379/0`` (for logs and /status)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable broker URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def url_of(client: Any) -> str:
    """The URL a redis-py client talks to (password masked)."""
    service = getattr(getattr(client, "connection_pool", None), "service_name", None)
    if service:  # redis-py's SentinelConnectionPool: the primary Sentinel names
        return f"sentinel://{service}"
    try:
        kw = client.connection_pool.connection_kwargs
    except AttributeError:
        return "<unknown broker>"
    auth = ":***@" if kw.get("password") else ""
    return f"redis://{auth}{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


class BrokerHealth:
    """Broker up/down as seen by one coordinator's scheduler, with bounded logging."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        log_every_s: float = LOG_EVERY_S,
        logger: logging.Logger = log,
    ) -> None:
        self.url = mask_url(url)
        self.clock, self.wall, self.log_every_s, self.log = clock, wall, log_every_s, logger
        self.up: bool | None = None  # None: not tried yet
        self.down_since: float | None = None  # wall clock
        self.last_error = ""
        self.by_kind: dict[str, int] = {}  # failed operations by kind, since start
        self._down_count = 0  # failed operations since it went down
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}
        self.lines = 0  # log lines written about failures (tests bound this)

    def ok(self) -> None:
        """A broker operation worked.  The "back" line is rate-limited like the
        failures, and the per-kind limits outlive it: a broker that answers PING but
        fails every send still gives a few lines a minute, not two per tick."""
        if self.up is False:
            now = self.clock()
            last = self._logged_at.get(_BACK)
            if last is None or now - last >= self.log_every_s:
                down = self.wall() - (self.down_since or self.wall())
                self.log.warning(
                    "broker %s is back after %.1f s (%d failed operations meanwhile)",
                    self.url,
                    down,
                    self._down_count,
                )
                self.lines += 1
                self._logged_at[_BACK] = now
            self._down_count = 0
        self.up = True
        self.down_since = None

    def failed(self, op: str, exc: BaseException) -> None:
        kind = f"{op}: {type(exc).__name__}"
        if self.up is not False:
            self.down_since = self.wall()
        self.up = False
        self.last_error = f"{kind}: {exc}"
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self._down_count += 1
        self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
        now = self.clock()
        last = self._logged_at.get(kind)
        if last is not None and now - last < self.log_every_s:
            return
        count = self._unlogged.pop(kind)
        self._logged_at[kind] = now
        self.lines += 1
        self.log.warning(
            "broker %s: %s failed %d time(s)%s: %s (next report in %.0f s)",
            self.url,
            op,
            count,
            "" if last is None else f" in the last {now - last:.0f} s",
            exc,
            self.log_every_s,
        )

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "up": self.up,
            "down_since": self.down_since,
            "last_error": self.last_error if self.up is False else "",
            "failures": dict(self.by_kind),
        }


def _task_id(raw: Any) -> str | None:
    try:
        message = json.loads(raw)[0]
        if isinstance(message, str):
            message = json.loads(message)
        headers = message.get("headers") or {}
        return headers.get("id") or (message.get("properties") or {}).get("correlation_id")
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):
        return None


def discard_unacked(client: redis.Redis, task_ids: Iterable[str], *, scan: int = 100) -> int:
    """Remove unacknowledged deliveries of ``task_ids`` (a dead worker's); returns how many.

    One pass over the unacked hash (which holds one entry per message a worker has
    taken and not acknowledged: about one per busy GPU)."""
    wanted = set(task_ids)
    if not wanted:
        return 0
    tags = [
        tag for tag, raw in client.hscan_iter(UNACKED_KEY, count=scan) if _task_id(raw) in wanted
    ]
    if not tags:
        return 0
    pipe = client.pipeline(transaction=True)
    pipe.zrem(UNACKED_INDEX_KEY, *tags)
    pipe.hdel(UNACKED_KEY, *tags)
    pipe.execute()
    return len(tags)


# kombu's Redis transport keeps a queue as one list per priority step:
# ``<queue>`` for priority 0, ``<queue>\x06\x16<p>`` for the others.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


class LostMessages:
    """Sent attempts nobody will run: no task state (the caller checks that), the
    message not in its queue, and no run lease or stored result for the job.

    Redis replication is asynchronous: a failover can forget a message the old
    primary acknowledged.  And a worker whose broker connection drops "restores" the
    messages it had taken but not started — to the dead primary, so the message is
    gone from the queue and sits only in ``unacked``, which kombu hands out again
    after the visibility timeout (hours).  The ledger says "placed", the slot says
    "sent": nothing else would send it again.  Missing on every look for ``grace_s``,
    it is reported lost (once); the caller discards any ``unacked`` copy and sends it
    again under the same attempt and fence.  The grace covers a worker between taking
    a message and starting it (its run lease appears then); a copy that is not lost
    after all is refused by the run lease or answered from the stored result, never
    run twice."""

    def __init__(
        self,
        client: Any,
        *,
        grace_s: float = 10.0,
        cache_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.grace_s, self.cache_s, self.clock = client, grace_s, cache_s, clock
        self._missing: dict[str, float] = {}  # task id -> first seen missing
        self._cache: dict[str, tuple[float, set[str]]] = {}
        self.reported = 0

    def _ids(self, key: str, read: Callable[[], Iterable[Any]]) -> set[str]:
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        ids = {t for t in (_task_id(raw) for raw in read()) if t}
        self._cache[key] = (now, ids)
        return ids

    def _queued(self, queue: str) -> set[str]:
        def read() -> list[Any]:
            out: list[Any] = []
            for p in PRIORITY_STEPS:
                key = queue if not p else f"{queue}{PRIORITY_SEP}{p}"
                out += [json.dumps([_text(m)]) for m in self.client.lrange(key, 0, -1)]
            return out

        return self._ids("q:" + queue, read)

    def _running(self, job_id: str) -> bool:
        """A run lease (a worker runs it) or a stored result (one ran it)."""
        from ringrift_fleet.execution.fencing import done_key, run_key

        return bool(self.client.exists(run_key(job_id), done_key(job_id)))

    def lost(self, queue: str, task_id: str, job_id: str | None = None) -> bool:
        """True once, when ``task_id`` has been out of ``queue``, with no run lease or
        result for ``job_id``, on every look for ``grace_s``."""
        if task_id in self._queued(queue) or (job_id is not None and self._running(job_id)):
            self._missing.pop(task_id, None)
            return False
        now = self.clock()
        first = self._missing.setdefault(task_id, now)
        if now - first < self.grace_s:
            return False
        del self._missing[task_id]
        self.reported += 1
        return True

    def forget(self, keep: Iterable[str]) -> None:
        """Drop what is known about task ids not in ``keep`` (bounded memory)."""
        wanted = set(keep)
        for t in [t for t in self._missing if t not in wanted]:
            del self._missing[t]


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
