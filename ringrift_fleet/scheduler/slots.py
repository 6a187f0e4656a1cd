"""The :class:`~ringrift_fleet.scheduler.ports.Slots` port twice: on Redis, and in memory.

:class:`RedisSlots` is what a coordinator runs: every key it touches is named by
:mod:`ringrift_fleet.execution.fencing` (``ringrift:slot:``, ``ringrift:fence:``,
``ringrift:notified:``, ``ringrift:run:``, ``ringrift:done:``), the module that
also holds the worker side of the fence.  :class:`MemorySlots` is the same
store in a dict with the same semantics (``SET NX``/``XX`` with expiry on an
injected clock, a published fence dropping another attempt's stored result),
plus the worker's half (claim a run, store a result) and injected broker
faults, for the fleet simulation and unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import redis

from ringrift_fleet.execution import fencing
from ringrift_fleet.execution.broker import discard_unacked, url_of
from ringrift_fleet.scheduler.ports import SlotHolder

CLAIMED, SENT = "claimed", "sent"


def slot_value(leader: str, sent: bool) -> str:
    return f"{leader}|{SENT if sent else CLAIMED}"


def parse_slot(raw: str) -> SlotHolder:
    leader, _, state = raw.rpartition("|")
    return SlotHolder(leader, state == SENT)


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisSlots:
    """Send slots, fences and notification marks in the broker's Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @property
    def url(self) -> str:
        return url_of(self.client)

    def ping(self) -> None:
        self.client.ping()

    def claim(self, job_id: str, attempt: int, leader: str, ttl: int) -> bool:
        key, mine = fencing.slot_key(job_id, attempt), slot_value(leader, False)
        if self.client.set(key, mine, nx=True, ex=ttl):
            return True
        held = self.client.get(key)
        return held is not None and _text(held) == mine

    def claim_and_fence(
        self,
        job_id: str,
        attempt: int,
        leader: str,
        ttl: int,
        token: str,
        fence_ttl: float,
        sent: Sequence[tuple[str, int]] = (),
    ) -> bool:
        return fencing.claim_slot_and_publish_fence(
            self.client,
            job_id,
            attempt,
            slot_value(leader, False),
            ttl,
            token,
            fence_ttl,
            mark=sent,
            marked_value=slot_value(leader, True),
        )

    def holder(self, job_id: str, attempt: int) -> SlotHolder | None:
        raw = self.client.get(fencing.slot_key(job_id, attempt))
        return None if raw is None else parse_slot(_text(raw))

    def mark_sent(self, job_id: str, attempt: int, leader: str, ttl: int) -> None:
        self.client.set(
            fencing.slot_key(job_id, attempt), slot_value(leader, True), xx=True, ex=ttl
        )

    def mark_sent_many(self, slots: Iterable[tuple[str, int]], leader: str, ttl: int) -> None:
        pipe = self.client.pipeline(transaction=False)  # one round trip for all of them
        for job_id, attempt in slots:
            pipe.set(fencing.slot_key(job_id, attempt), slot_value(leader, True), xx=True, ex=ttl)
        pipe.execute()

    def reclaim(self, job_id: str, attempt: int, leader: str, ttl: int) -> None:
        key = fencing.slot_key(job_id, attempt)
        self.client.set(key, slot_value(leader, False), xx=True, ex=ttl)

    def release(self, job_id: str, attempt: int) -> None:
        self.client.delete(fencing.slot_key(job_id, attempt))

    def publish_fence(self, job_id: str, token: str, ttl: float) -> None:
        fencing.publish_fence(self.client, job_id, token, ttl)

    def withdraw_fence(self, job_id: str, token: str | None) -> dict[str, object] | None:
        return fencing.withdraw_fence(self.client, job_id, token)

    def notify_once(self, key: str, leader: str, ttl: int) -> bool:
        return bool(self.client.set(fencing.notified_key(key), leader, nx=True, ex=ttl))

    def lease_states(self, job_ids: list[str]) -> dict[str, bool]:
        return fencing.lease_states(self.client, job_ids)

    def stored_results(self, tokens: dict[str, str]) -> dict[str, dict[str, object]]:
        return dict(fencing.stored_results(self.client, tokens))

    def discard_unacked(self, task_ids: Iterable[str]) -> int:
        return discard_unacked(self.client, task_ids)


# --- in memory ------------------------------------------------------------------------------


class BrokerFault(ConnectionError):
    """An injected broker failure (a ``ConnectionError``, so it is one of BROKER_ERRORS)."""


@dataclass
class _Key:
    value: str
    expires: float  # clock time; inf = never


@dataclass
class MemorySlots:
    """:class:`RedisSlots` in a dict, on an injected clock.

    ``fault(op)`` is asked before every operation (``"claim"``, ``"mark_sent"``,
    ``"publish_fence"``…); when it returns True the operation raises
    :class:`BrokerFault` without any effect, as a broker that did not answer.
    The worker's half: :meth:`fence`, :meth:`claim_run`, :meth:`lapse_run`,
    :meth:`drop_run`, :meth:`store_result`.
    """

    clock: Callable[[], float]
    fault: Callable[[str], bool] = lambda op: False
    keys: dict[str, _Key] = field(default_factory=dict)
    results: dict[str, dict[str, object]] = field(default_factory=dict)  # job -> stored
    unacked: set[str] = field(default_factory=set)  # task ids taken, not acknowledged

    @property
    def url(self) -> str:
        return "memory://"

    def _check(self, op: str) -> None:
        if self.fault(op):
            raise BrokerFault(f"injected broker failure: {op}")

    def _get(self, key: str) -> str | None:
        k = self.keys.get(key)
        if k is None:
            return None
        if k.expires <= self.clock():
            del self.keys[key]
            return None
        return k.value

    def _set(self, key: str, value: str, ttl: float, *, nx: bool = False, xx: bool = False) -> bool:
        held = self._get(key)
        if (nx and held is not None) or (xx and held is None):
            return False
        self.keys[key] = _Key(value, self.clock() + ttl)
        return True

    # the scheduler's side (the Slots port)

    def ping(self) -> None:
        self._check("ping")

    def claim(self, job_id: str, attempt: int, leader: str, ttl: int) -> bool:
        self._check("claim")
        key, mine = fencing.slot_key(job_id, attempt), slot_value(leader, False)
        return self._set(key, mine, ttl, nx=True) or self._get(key) == mine

    def claim_and_fence(
        self,
        job_id: str,
        attempt: int,
        leader: str,
        ttl: int,
        token: str,
        fence_ttl: float,
        sent: Sequence[tuple[str, int]] = (),
    ) -> bool:
        """:meth:`mark_sent_many` of ``sent``, :meth:`claim`, then (only when taken)
        :meth:`publish_fence`: one script on Redis."""
        if sent:
            self.mark_sent_many(sent, leader, ttl)
        if not self.claim(job_id, attempt, leader, ttl):
            return False
        self.publish_fence(job_id, token, fence_ttl)
        return True

    def holder(self, job_id: str, attempt: int) -> SlotHolder | None:
        self._check("holder")
        raw = self._get(fencing.slot_key(job_id, attempt))
        return None if raw is None else parse_slot(raw)

    def mark_sent(self, job_id: str, attempt: int, leader: str, ttl: int) -> None:
        self._check("mark_sent")
        self._set(fencing.slot_key(job_id, attempt), slot_value(leader, True), ttl, xx=True)

    def mark_sent_many(self, slots: Iterable[tuple[str, int]], leader: str, ttl: int) -> None:
        self._check("mark_sent")  # one pipeline on Redis: all of them fail together
        for job_id, attempt in slots:
            self._set(fencing.slot_key(job_id, attempt), slot_value(leader, True), ttl, xx=True)

    def reclaim(self, job_id: str, attempt: int, leader: str, ttl: int) -> None:
        self._check("reclaim")
        self._set(fencing.slot_key(job_id, attempt), slot_value(leader, False), ttl, xx=True)

    def release(self, job_id: str, attempt: int) -> None:
        self._check("release")
        self.keys.pop(fencing.slot_key(job_id, attempt), None)

    def publish_fence(self, job_id: str, token: str, ttl: float) -> None:
        self._check("publish_fence")
        self._set(fencing.fence_key(job_id), token, max(ttl, 0.001))
        if _token_of(self.results.get(job_id)) not in (None, token):
            del self.results[job_id]

    def withdraw_fence(self, job_id: str, token: str | None) -> dict[str, object] | None:
        self._check("withdraw_fence")
        stored = self.results.get(job_id)
        if token and stored is not None and _token_of(stored) == token:
            return stored  # that attempt finished first: nothing to void
        self.keys.pop(fencing.fence_key(job_id), None)
        return None

    def notify_once(self, key: str, leader: str, ttl: int) -> bool:
        self._check("notify_once")
        return self._set(fencing.notified_key(key), leader, ttl, nx=True)

    def lease_states(self, job_ids: list[str]) -> dict[str, bool]:
        self._check("lease_states")
        return {j: self._get(fencing.run_key(j)) is not None or j in self.results for j in job_ids}

    def stored_results(self, tokens: dict[str, str]) -> dict[str, dict[str, object]]:
        self._check("stored_results")
        return {
            j: r
            for j, t in tokens.items()
            if (r := self.results.get(j)) is not None and _token_of(r) == t
        }

    def discard_unacked(self, task_ids: Iterable[str]) -> int:
        self._check("discard_unacked")
        gone = self.unacked & set(task_ids)
        self.unacked -= gone
        return len(gone)

    # the worker's side (what execution/fencing.py's scripts do on Redis)

    def fence(self, job_id: str) -> str | None:
        """The published fence token of the job's live attempt, None when withdrawn."""
        return self._get(fencing.fence_key(job_id))

    def claim_run(self, job_id: str, owner: str, token: str, until: float) -> bool:
        """A worker starts an attempt (``fencing.claim_run``): only while ``token`` is
        the published fence, and only if no live attempt's run holds the lease (a
        lease of a stale attempt is taken over at once); the lease lasts ``until``."""
        if self.fence(job_id) != token:
            return False
        key = fencing.run_key(job_id)
        held = self._get(key)
        if held is not None and held != f"{owner}|{token}" and held.endswith(f"|{token}"):
            return False
        self.keys[key] = _Key(f"{owner}|{token}", until)
        return True

    def lapse_run(self, job_id: str, owner: str, at: float) -> None:
        """The run's worker stopped renewing (it died, or was cut off): it lapses at ``at``."""
        k = self.keys.get(fencing.run_key(job_id))
        if k is not None and k.value.rpartition("|")[0] == owner:
            k.expires = min(k.expires, at)

    def drop_run(self, job_id: str, owner: str) -> None:
        k = self.keys.get(fencing.run_key(job_id))
        if k is not None and k.value.rpartition("|")[0] == owner:
            del self.keys[fencing.run_key(job_id)]

    def store_result(self, job_id: str, token: str, result: dict[str, object]) -> bool:
        """Complete a run: stored only while ``token`` is the published fence."""
        if self.fence(job_id) != token:
            return False
        self.results[job_id] = result
        return True


def _token_of(result: dict[str, object] | None) -> str | None:
    if result is None:
        return None
    fence = result.get("fence")
    token = fence.get("token") if isinstance(fence, dict) else None
    return token if isinstance(token, str) else ""
