"""Putting work on the broker: :func:`send_job` is the only way the scheduler does it.

Usage from the scheduler::

    queue = route_for(JobType.SELFPLAY, tier="t1")          # or host="gpu-3"
    publish_fence(redis_client, job_id, token, ttl)          # before every attempt
    task_id = send_job(JobType.SELFPLAY, {"board_type": "hex8", "num_players": 2,
                       "num_games": 50}, queue=queue, job_id=job_id,
                       fence={"token": token, "attempt": 2, "term": 7})
    outcome = job_outcome(app.AsyncResult(task_id))          # later

Arguments are validated here too, so a bad job never reaches a worker.  Task
ids are ``<job_id>.a<attempt>``, so a result can be found from the ledger alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from ringrift_fleet.execution.jobs import TASK_NAMES, parse_fence, validate_job
from ringrift_fleet.execution.queues import route_for
from ringrift_fleet.models import JobType

__all__ = ["job_outcome", "queue_depths", "route_for", "send_job", "task_id_for"]

# kombu's Redis transport keeps priority levels in sibling lists named with this separator.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def default_app() -> Celery:
    from ringrift_fleet.celery import app

    return app


def task_id_for(job_id: str, attempt: int) -> str:
    return f"{job_id}.a{attempt}"


def send_job(
    job_type: JobType | str,
    kwargs: Mapping[str, Any],
    *,
    queue: str,
    job_id: str,
    fence: Mapping[str, Any] | None = None,
    app: Celery | None = None,
) -> str:
    """Validate and send one job attempt to ``queue``; returns the Celery task id."""
    jt = JobType(job_type).value if job_type != "noop" else "noop"
    kw = dict(kwargs)
    kw["job_id"] = job_id
    if fence is not None:
        kw["fence"] = dict(fence)
    validate_job(jt, kw)
    parsed = parse_fence(kw.get("fence"), TASK_NAMES[jt])
    task_id = task_id_for(job_id, parsed.attempt if parsed else 1)
    celery_app = app or default_app()
    _no_result_subscription(celery_app)
    celery_app.send_task(TASK_NAMES[jt], kwargs=kw, queue=queue, task_id=task_id)
    return task_id


def _no_result_subscription(app: Celery) -> None:
    """Send without subscribing to the task's result channel.

    Celery's Redis result backend subscribes to ``celery-task-meta-<id>`` on every
    send (``on_task_call``) so that ``get()`` can wait on pub/sub, and unsubscribes
    when the result object is dropped; redis-py only forgets a channel when it reads
    the reply, and the scheduler never reads that connection (it polls results by
    key: ``job_outcome``).  So the leader kept two entries per attempt ever sent
    (2,000 sends: 2,000 channels and 2,000 pending unsubscribes), and the unread
    replies piled up towards Redis's pub/sub output-buffer limit.  The worker still
    stores every result (``ignore_result`` would have stopped that): only the
    sender's subscription is skipped, on this thread's backend instance.
    """
    backend = app.backend  # one instance per thread
    if getattr(backend, "result_consumer", None) is not None and not getattr(
        backend, "_ringrift_no_subscription", False
    ):
        backend.on_task_call = _skip_subscription
        backend._ringrift_no_subscription = True


def _skip_subscription(producer: object, task_id: str) -> None:
    return None


def job_outcome(result: AsyncResult) -> dict[str, Any] | None:
    """The job's result dict, ``{"status": "failed", "error": …}`` for a failed task, or
    None while it has not finished."""
    state = result.state
    if state == "SUCCESS":
        value = result.result
        return value if isinstance(value, dict) else {"status": "completed", "value": value}
    if state in ("FAILURE", "REVOKED"):
        err = result.result
        return {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}" if err else state.lower(),
            "task_id": result.id,
        }
    return None


def queue_depths(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue (all priority levels), read straight from Redis."""
    names = list(queues)
    pipe = client.pipeline()
    for q in names:
        pipe.llen(q)
        for step in _PRIORITY_STEPS:
            pipe.llen(f"{q}{_PRIORITY_SEP}{step}")
    counts = pipe.execute()
    width = 1 + len(_PRIORITY_STEPS)
    return {q: int(sum(counts[i * width : (i + 1) * width])) for i, q in enumerate(names)}
