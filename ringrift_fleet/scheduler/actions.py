# mypy: disallow-any-explicit
"""What ``plan`` asks the shell to do: inert values, applied in order by the beat.

Every action that could be applied twice carries a ``slot``: a name derived
only from ledger state (job id and attempt, config and generation), so two
leaders planning from the same state name the same slot and the broker-side
``SET NX`` on it accepts the first and refuses the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ringrift_fleet.jsontypes import JSONMapping
from ringrift_fleet.models import JobType
from ringrift_fleet.scheduler.snapshot import ConfigState


@dataclass(frozen=True)
class Enqueue:
    """Add a new job to the ledger and place its first attempt on ``node_id``."""

    job_id: str
    job_type: JobType
    config_key: str
    node_id: str
    queue: str  # the node's own queue
    kwargs: JSONMapping = field(default_factory=dict)
    max_attempts: int = 3
    hard_limit_s: float = 7200.0

    attempt = 1

    @property
    def slot(self) -> str:
        return f"{self.job_id}#1"


@dataclass(frozen=True)
class Dispatch:
    """Place a new attempt of a job already in the ledger (a lost job, a lost send)."""

    job_id: str
    job_type: JobType
    config_key: str
    node_id: str
    queue: str
    attempt: int  # the attempt this placement starts
    kwargs: JSONMapping = field(default_factory=dict)

    @property
    def slot(self) -> str:
        return f"{self.job_id}#{self.attempt}"


HOST_DEAD = "host_dead"  # membership declared the attempt's host dead
HARD_LIMIT = "hard_limit"  # it ran past its hard limit
LEASE_LOST = "lease_lost"  # started, and its run lease then vanished: its worker died
# an attempt that ended so was lost with its worker or host, not failed by the job
LOSSES = frozenset({HOST_DEAD, LEASE_LOST})


@dataclass(frozen=True)
class Release:
    """Void a job's live attempt (its host died, its worker died, or it ran past its
    hard limit).

    The job goes back to pending under the ledger; the old attempt's fence is
    dead, so if it ever reports, its result is refused.  ``cause`` is one of
    ``HOST_DEAD``, ``HARD_LIMIT``, ``LEASE_LOST``.
    """

    job_id: str
    node_id: str
    attempt: int
    reason: str
    cause: str = HOST_DEAD


@dataclass(frozen=True)
class FailJob:
    """Give a job up for good (attempts exhausted, or a stage job's host is gone)."""

    job_id: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class SetState:
    """Write a config's training cursor / model registry record."""

    config_key: str
    state: ConfigState


@dataclass(frozen=True)
class Notify:
    """A webhook notification, sent once per ``key``."""

    event_type: str
    title: str
    message: str
    severity: str = "info"
    details: JSONMapping = field(default_factory=dict)
    key: str = ""

    @property
    def slot(self) -> str:
        return f"notify:{self.key or self.event_type + ':' + self.title}"


Action = Enqueue | Dispatch | Release | FailJob | SetState | Notify
