"""Workloads: what a job actually does once the task layer has checked and guarded it.

Each workload is a plain function ``run_<type>(spec, ctx) -> dict`` that knows
nothing about Celery or Redis: the task layer hands it a :class:`JobContext`
(where to write, how to report progress, when to stop) and turns its dict into
the task result.  The reference game's pure functions can be used directly (the
scheduler's simulator does), without any context at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ringrift_fleet.execution.artifacts import ArtifactStore


class WorkloadError(RuntimeError):
    """The job's work failed (command exit code, too few games …); the message says why."""


class StopRequested(Exception):
    """Raised inside a workload to make it stop and keep what it finished."""


SUPERSEDED = "superseded: another copy of this job took over its run lease"


def _never() -> bool:
    return False


def _no_progress(done: int, total: int) -> None:
    return None


@dataclass
class JobContext:
    """What a workload may use from its surroundings."""

    store: ArtifactStore
    node: str = ""
    progress: Callable[[int, int], None] = _no_progress
    # True once another copy of the job has taken it over (a newer attempt took the
    # run lease): stop at once and write nothing, that copy's results are the ones.
    superseded: Callable[[], bool] = _never
    # Exceptions that mean "stop now, keep what you have" (soft time limit, revoke).
    interrupts: tuple[type[BaseException], ...] = field(default=(StopRequested,))
