"""The scheduler's ports: every effect the beat has goes through one of these.

``plan`` decides; :mod:`ringrift_fleet.scheduler.interpreter` applies its actions
through these small interfaces, and nothing else.  Production binds them to the
replicated ledger, Redis (:class:`~ringrift_fleet.scheduler.slots.RedisSlots`) and
Celery (:mod:`ringrift_fleet.scheduler.service`); the fleet simulation binds the
same interpreter to in-memory ones (:class:`~ringrift_fleet.scheduler.slots.MemorySlots`
and an in-process ledger running the real state machine).

=============  ============================================================
``Ledger``     the replicated job ledger (:class:`ringrift_fleet.consensus.api.Ledger`)
``Leadership`` whether we lead, our term and fence (:mod:`ringrift_fleet.consensus.api`)
``Slots``      broker-side fences: send slots, job fences, notification marks,
               run leases and stored results, unacknowledged deliveries
``Sender``     one attempt onto the broker (Celery's ``send_task``)
``Results``    the broker's task state of one attempt (Celery's result backend)
``ResultsMany`` the same for many attempts in one round trip (optional)
``Notifier``   a webhook notification
``Clock``      the time now
=============  ============================================================

A port that talks to the broker raises one of
:data:`ringrift_fleet.execution.broker.BROKER_ERRORS` when the broker failed; the
interpreter then defers what is left of the tick (nothing it did is lost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ringrift_fleet.consensus.api import Leadership, Ledger
from ringrift_fleet.models import JobType

__all__ = [
    "Clock",
    "Leadership",
    "Ledger",
    "LostMessageFinder",
    "Notifier",
    "Results",
    "ResultsMany",
    "Sender",
    "SlotHolder",
    "Slots",
]

Clock = Callable[[], float]

# A task result as Celery hands it back: a dict from our workloads, an exception for
# a failed task, anything for a task somebody else sent.
TaskValue = object


class Sender(Protocol):
    """How an attempt reaches the broker (the execution layer's ``send_job``)."""

    def __call__(
        self,
        job_type: JobType,
        kwargs: Mapping[str, object],
        *,
        queue: str,
        job_id: str,
        fence: Mapping[str, object],
    ) -> str: ...


class Results(Protocol):
    """Task id -> (Celery state, result): ``("PENDING", None)`` for one never heard of."""

    def __call__(self, task_id: str) -> tuple[str, TaskValue]: ...


class ResultsMany(Protocol):
    """Task ids -> (Celery state, result) each, as :class:`Results` says one: what the
    leader reads every tick for every live attempt, in one round trip rather than
    one per attempt (a host's queue may hold several short jobs)."""

    def __call__(self, task_ids: Sequence[str]) -> Mapping[str, tuple[str, TaskValue]]: ...


class Notifier(Protocol):
    """A webhook notification (``notifications.send_webhook_notification``)."""

    def __call__(
        self,
        *,
        event_type: str,
        title: str,
        message: str,
        severity: str,
        details: dict[str, object],
    ) -> object: ...


@dataclass(frozen=True)
class SlotHolder:
    """Who holds an attempt's send slot: the leader's fence, and whether its send returned."""

    leader: str
    sent: bool


class Slots(Protocol):
    """The broker-side fence store the scheduler writes (one implementation per
    backend in :mod:`ringrift_fleet.scheduler.slots`).

    A send slot names one attempt (``job#attempt``); it is taken with ``SET NX``, so
    two leaders never both send the same attempt.
    """

    @property
    def url(self) -> str:
        """Where the store is, for logs and /status (secrets masked by the caller)."""
        ...

    def ping(self) -> None: ...

    def claim(self, job_id: str, attempt: int, leader: str, ttl: int) -> bool:
        """Take the attempt's send slot for ``leader`` (``SET NX``); True also when it
        is already ours and not yet marked sent (our own send that failed)."""
        ...

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
        """:meth:`claim` and, only when it succeeds, :meth:`publish_fence` of ``token``,
        in one step (one script, one round trip on Redis): a refused slot writes no
        fence.  ``sent``: ``leader``'s slots whose send returned, marked sent first in
        the same step (:meth:`mark_sent`), whatever the claim's outcome."""
        ...

    def holder(self, job_id: str, attempt: int) -> SlotHolder | None: ...

    def mark_sent(self, job_id: str, attempt: int, leader: str, ttl: int) -> None:
        """The send returned: the slot now says so (only if it still exists)."""
        ...

    def mark_sent_many(self, slots: Iterable[tuple[str, int]], leader: str, ttl: int) -> None:
        """:meth:`mark_sent` of several ``(job, attempt)`` slots, in one round trip."""
        ...

    def reclaim(self, job_id: str, attempt: int, leader: str, ttl: int) -> None:
        """A sent attempt's message was lost: the slot is ours and unsent again."""
        ...

    def release(self, job_id: str, attempt: int) -> None:
        """Give the slot up (the attempt could not be sent at all)."""
        ...

    def publish_fence(self, job_id: str, token: str, ttl: float) -> None:
        """The job's live attempt is ``token``: workers refuse every other one."""
        ...

    def withdraw_fence(self, job_id: str, token: str | None) -> dict[str, object] | None:
        """No attempt of the job is live any more; a worker running one stops.

        Unless the live attempt ``token`` already stored its result: that result is
        returned and nothing is voided (one atomic step with the worker's finish)."""
        ...

    def notify_once(self, key: str, leader: str, ttl: int) -> bool:
        """True the first time ``key`` is asked for, across leaders."""
        ...

    def lease_states(self, job_ids: list[str]) -> dict[str, bool]:
        """Per job: whether a run lease or a stored result exists for it."""
        ...

    def stored_results(self, tokens: dict[str, str]) -> dict[str, dict[str, object]]:
        """Results workers stored for these (job -> fence token) live attempts."""
        ...

    def discard_unacked(self, task_ids: Iterable[str]) -> int:
        """Drop unacknowledged deliveries of these task ids (a dead worker's)."""
        ...


class LostMessageFinder(Protocol):
    """Sent attempts whose message the broker forgot (``broker.LostMessages``)."""

    def lost(self, queue: str, task_id: str, job_id: str | None = None) -> bool: ...

    def forget(self, keep: Iterable[str]) -> None: ...
