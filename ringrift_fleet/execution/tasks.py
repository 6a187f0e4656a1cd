"""The Celery tasks: check arguments, guard with fences and run keys, run a workload.

Task names (keyword arguments only; see :mod:`ringrift_fleet.execution.jobs`):
``ringrift.selfplay``, ``ringrift.training``, ``ringrift.evaluation``,
``ringrift.sync``, ``ringrift.noop`` (the guarded no-op the dispatch benchmark
sends) and ``ringrift.plain_noop`` (its unguarded baseline).

Result (a JSON dict)::

    {"job_id", "job_type", "attempt", "fence", "node", "worker",
     "status": "completed" | "refused" | "partial",
     "artifacts": [{"name", "size", "sha256"}], ...}

plus, by type: selfplay ``games``, ``games_path``, ``config``; training
``model``, ``version``, ``samples``; evaluation ``win_rate``, ``elo_diff``,
``games``, ``candidate``, ``champion`` (and ``models_fetched`` when it first copied
a model from its ``model_sources``); sync ``fetched``, ``skipped``.
``refused`` carries ``reason`` (stale fence, or the job runs elsewhere).  A copy
of a job that already completed returns the stored result with
``"duplicate": true``.

A job that fails (bad arguments, a workload error, the redelivery cap) fails
the Celery task with an exception whose message names the field or the cause;
:func:`ringrift_fleet.execution.dispatch.job_outcome` turns that into
``{"status": "failed", "error": …}`` for callers that want one shape.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from billiard.process import current_process
from celery import Celery, Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from ringrift_fleet.config import P2PConfig, get_p2p_config
from ringrift_fleet.errors import ConfigError, ValidationError
from ringrift_fleet.execution import fencing
from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.failures import TaskInputError, as_task_input_error
from ringrift_fleet.execution.jobs import TASK_NAMES, JobSpec, validate_job
from ringrift_fleet.execution.redis_clients import (
    BrokerSpec,
    ReplicaWait,
    broker_spec,
    redis_client,
)
from ringrift_fleet.execution.retention import retain
from ringrift_fleet.execution.settings import time_limits
from ringrift_fleet.execution.sync import SyncError, SyncReport, sync_artifacts
from ringrift_fleet.execution.workloads import JobContext, StopRequested, WorkloadError
from ringrift_fleet.execution.workloads.commands import run_command, templates_for
from ringrift_fleet.execution.workloads.evaluation import fetch_missing_models, run_evaluation
from ringrift_fleet.execution.workloads.selfplay import run_selfplay
from ringrift_fleet.execution.workloads.training import run_training
from ringrift_fleet.jsontypes import capped_lists

log = logging.getLogger(__name__)

PROGRESS_STATE = "PROGRESS"
PROGRESS_EVERY_S = 0.5
NODE_ENV = "RINGRIFT_WORKER_NODE"
SYNC_REQUEST_TIMEOUT_S = 30.0  # one request to a source (connect, or one read)
SYNC_PARALLEL = 4  # sources a sync from several reads from at once


class Terminated(Exception):
    """SIGTERM arrived (a revoke with terminate=True): stop and keep what is finished."""


def run_sync(spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
    """From one source, or (by prefix) from several: each adds what the host still
    lacks, and one unreachable source does not lose the others' files.

    Several sources are read SYNC_PARALLEL at a time (one by one, a loaded
    soak's games sync from 29 sources took 41 s, each waiting for the last) and
    share ``SYNC_SOURCES_BUDGET``: they start in a random order (so a slow one
    does not starve the same others every time), each request's timeout is cut
    to what is left, and the sources not reached are reported as deferred -- the
    next sync takes them.  One source keeps the job's own limit."""
    cfg = get_p2p_config()
    given = spec.get("source")
    sources = list(given) if isinstance(given, list) else [given]
    several = len(sources) > 1
    if several:
        random.shuffle(sources)
    deadline = time.monotonic() + cfg.SYNC_SOURCES_BUDGET if several else float("inf")
    ending = threading.Event()  # the job is being stopped: every source stops
    lock = threading.Lock()

    def stop() -> bool:
        return ending.is_set() or ctx.superseded() or time.monotonic() >= deadline

    def progress(done: int, total: int) -> None:
        with lock:
            ctx.progress(done, total)

    def one(source: str) -> tuple[str, SyncReport | None, str | None]:
        """(source, what it gave, why it failed); neither: deferred."""
        left = deadline - time.monotonic()
        if left <= 0:
            return source, None, None
        try:
            report = sync_artifacts(
                ctx.store,
                source,
                spec.get("artifacts"),
                prefix=spec.get("prefix"),
                token=cfg.CLUSTER_KEY,
                timeout=min(SYNC_REQUEST_TIMEOUT_S, max(left, 1.0)),
                progress=progress,
                should_stop=stop,
            )
        except SyncError as exc:
            if not several:
                raise WorkloadError(f"sync from {source}: {exc}") from None
            if time.monotonic() >= deadline:
                log.warning("sync from %s stopped by the sources budget: %s", source, exc)
                return source, None, None
            log.warning("sync from %s failed: %s", source, exc)
            return source, None, str(exc)
        return source, report, None

    if several:
        with ThreadPoolExecutor(min(SYNC_PARALLEL, len(sources)), "sync-source") as pool:
            try:
                outcomes = list(pool.map(one, sources))
            except BaseException:
                ending.set()  # a terminate or an error: the others stop at their next file
                raise
    else:
        outcomes = [one(sources[0])]
    fetched: list[dict[str, Any]] = []
    skipped: list[str] = []
    failed: dict[str, str] = {}
    deferred: list[str] = []
    got: set[str] = set()
    for source, report, error in outcomes:
        if error is not None:
            failed[source] = error
        elif report is None:
            deferred.append(source)
        else:
            for a in report.fetched:  # two sources may have given the same file
                if a["name"] not in got:
                    got.add(a["name"])
                    fetched.append(a)
            skipped += report.skipped
    if failed and len(failed) == len(sources):
        raise WorkloadError(f"sync: every source failed: {failed}")
    if deferred:
        log.warning(
            "sync: %d of %d sources deferred to the next sync (budget %gs spent)",
            len(deferred),
            len(sources),
            cfg.SYNC_SOURCES_BUDGET,
        )
    return {
        "status": "completed",
        "source": given,
        "fetched": [a["name"] for a in fetched],
        "skipped": [n for n in dict.fromkeys(skipped) if n not in got],
        "failed_sources": failed,
        "deferred_sources": deferred,
        "artifacts": fetched,
    }


def run_noop(spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
    return {"status": "completed", "artifacts": []}


REFERENCE: dict[str, Callable[[JobSpec, JobContext], dict[str, Any]]] = {
    "selfplay": run_selfplay,
    "training": run_training,
    "evaluation": run_evaluation,
    "sync": run_sync,
    "noop": run_noop,
}


def node_name(cfg: P2PConfig) -> str:
    return os.environ.get(NODE_ENV) or cfg.NODE_ID


@functools.lru_cache(maxsize=4)
def _redis(spec: BrokerSpec) -> redis.Redis:
    # redis-py pools notice a fork and reconnect, so one client per process is safe.
    return redis_client(spec, timeout=10, connect_timeout=5)


@functools.lru_cache(maxsize=4)
def _replica_wait(spec: BrokerSpec, timeout_s: float) -> ReplicaWait:
    """``WAIT 1`` after a stored result (a Sentinel set only): see fencing.finish_run."""
    return ReplicaWait(_redis(spec), timeout_s, enabled=spec.sentinel)


def fence_client(cfg: P2PConfig) -> redis.Redis:
    """The Redis holding fences and run keys: the broker's (its current primary)."""
    return _redis(broker_spec(cfg))


@functools.lru_cache(maxsize=4)
def _templates(path: str) -> dict[str, Any]:
    return templates_for(path)


def workload_for(job_type: str, cfg: P2PConfig) -> Callable[[JobSpec, JobContext], dict[str, Any]]:
    template = _templates(cfg.WORKLOADS_FILE).get(job_type)
    if template is not None:
        return functools.partial(run_command, template)
    return REFERENCE[job_type]


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a job runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated("terminated by SIGTERM (revoked)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress(task: Task, job_id: str) -> Callable[[int, int], None]:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if task.request.id is None or (now - last[0] < PROGRESS_EVERY_S and done < total):
            return
        last[0] = now
        with contextlib.suppress(Exception):  # progress is best effort, never fatal
            task.update_state(
                state=PROGRESS_STATE, meta={"job_id": job_id, "done": done, "total": total}
            )

    return report


def execute(task: Task, job_type: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one job under its guards (see :mod:`ringrift_fleet.execution.fencing`)."""
    cfg = get_p2p_config()
    spec = validate_job(job_type, kwargs, default_job_id=task.request.id or uuid.uuid4().hex)
    node = node_name(cfg)
    base: dict[str, Any] = {
        "job_id": spec.job_id,
        "job_type": job_type,
        "attempt": spec.attempt,
        "fence": spec.fence.to_dict() if spec.fence else None,
        "node": node,
        "worker": task.request.hostname or "",
    }
    client = fence_client(cfg)
    token = spec.fence.token if spec.fence else None
    claim = fencing.wait_and_claim(
        client,
        spec.job_id,
        owner=base["worker"] or node,
        token=token,
        attempt=spec.attempt,
        ttl=cfg.RUN_LEASE_TTL,
        count_ttl=cfg.RESULT_EXPIRES,
    )
    if claim.status == "refused":
        return {**base, "status": "refused", "reason": claim.reason, "artifacts": []}
    if claim.status == "done":
        return {**(claim.result or {}), "duplicate": True}
    if claim.status == "held":
        holder = (claim.holder or {}).get("owner", "another worker")
        if token and (claim.holder or {}).get("token") == token:
            # Another copy of this very attempt runs (a message restored or sent again
            # around a broker failover): its result is the attempt's.  Reporting this
            # copy as refused would store that under the same task id, and the leader
            # would void the attempt that is running.
            log.info("job %s attempt %s: a copy runs on %s", spec.job_id, spec.attempt, holder)
            raise Ignore()
        return {
            **base,
            "status": "refused",
            "reason": f"job {spec.job_id} is running on {holder}",
            "artifacts": [],
        }
    lease = claim.lease
    if claim.deliveries > cfg.MAX_REDELIVERIES:
        fencing.release_run(client, spec.job_id, lease)
        raise WorkloadError(
            f"job {spec.job_id} attempt {spec.attempt}: started {claim.deliveries - 1} times and "
            f"its worker was lost each time; failed after MAX_REDELIVERIES={cfg.MAX_REDELIVERIES} "
            "instead of killing another worker"
        )
    # the pair of "ran to the end": a message received but still queued behind another
    # job is not running, and a warm shutdown hands it back instead of waiting for it
    log.info("job %s attempt %s started on %s", spec.job_id, spec.attempt, node)
    store = ArtifactStore(cfg.artifact_dir, games_keep=cfg.GAMES_KEEP_FILES)
    keeper = fencing.LeaseKeeper(client, spec.job_id, lease, cfg.RUN_LEASE_TTL, token)
    with keeper:
        ctx = JobContext(
            store=store,
            node=node,
            progress=_progress(task, spec.job_id),
            superseded=keeper.lost.is_set,
            interrupts=(SoftTimeLimitExceeded, Terminated, StopRequested),
        )
        started = time.monotonic()
        try:
            with sigterm_raises():
                fetched = (
                    fetch_missing_models(
                        spec, store, cfg.CLUSTER_KEY, should_stop=keeper.lost.is_set
                    )
                    if job_type == "evaluation"
                    else []
                )
                out = workload_for(job_type, cfg)(spec, ctx)
                if fetched:
                    out = {**out, "models_fetched": fetched}
        except BaseException:
            with contextlib.suppress(redis.RedisError):
                fencing.release_run(client, spec.job_id, lease)
            raise
    # the job's run time as the worker measured it (ringrift_job_duration_seconds)
    # stored cut (Celery's backend, the run store, the ledger): a games sync's lists
    # of every file were 560 kB; retention below still sees the whole of ``out``
    result = capped_lists({**base, **out, "run_seconds": round(time.monotonic() - started, 3)})
    _sweep(store, cfg)
    retain(store, spec, out, models_keep=cfg.MODELS_KEEP, evaluations_keep=cfg.EVALUATIONS_KEEP)
    if keeper.lost.is_set():
        if keeper.revoked.is_set():
            # the leader placed a new attempt: free the lease for it at once
            with contextlib.suppress(redis.RedisError):
                fencing.release_run(client, spec.job_id, lease)
            reason = "attempt revoked: the leader placed the job again under a new attempt"
        else:
            reason = "run lease taken over by a newer attempt"
        log.info("job %s attempt %s stopped: %s", spec.job_id, spec.attempt, reason)
        result.update(status="refused", reason=reason)
        return result
    # one line per run that did all its work (whatever Celery then manages to record:
    # a broker failover can cost the SUCCESS, the leader then reads the run store)
    log.info("job %s attempt %s ran to the end on %s", spec.job_id, spec.attempt, node)
    outcome = fencing.finish_run(
        client,
        spec.job_id,
        lease,
        result,
        token=token,
        expires=cfg.RESULT_EXPIRES,
        replicate=_replica_wait(broker_spec(cfg), cfg.BROKER_WAIT_TIMEOUT),
    )
    if outcome == "duplicate":
        return {**(fencing.stored_result(client, spec.job_id) or result), "duplicate": True}
    if outcome != "ok":
        result.update(status="refused", reason=f"result discarded: {outcome} (fence or lease)")
    if result.get("stopped") == Terminated.__name__:
        _exit_terminated_pool_process()
    return result


def _sweep(store: ArtifactStore, cfg: P2PConfig) -> None:
    """Old job logs and work dirs go once their results have expired from Redis
    (never sooner than twice the longest job).  Housekeeping never fails a job."""
    try:
        store.sweep(max(cfg.RESULT_EXPIRES, 2 * cfg.longest_time_limit))
    except OSError as exc:
        log.warning("sweeping old job logs in %s failed: %s", store.root, exc)


def _exit_terminated_pool_process() -> None:
    """After a revoke's SIGTERM was handled (group stopped, finished work stored), leave.

    billiard assumes a process it sent SIGTERM to dies, and marks it so; one that
    survived would have a later crash reported as a revoke instead of a lost worker
    (and not redelivered).  Exiting keeps its books right; the pool starts a fresh
    process.  Only pool children exit; the result is already in the run store.
    """
    if current_process().name.startswith("ForkPoolWorker"):
        logging.shutdown()
        os._exit(0)


def _task_body(job_type: str, name: str) -> Callable[..., dict[str, Any]]:
    def run(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if args:
            raise TaskInputError(
                f"{name}: takes keyword arguments only (got {len(args)} positional); "
                "use --kwargs '{...}'"
            )
        try:
            return execute(self, job_type, kwargs)
        except ValidationError as exc:  # one line for `celery result`: see failures.py
            raise as_task_input_error(exc) from None

    run.__name__ = run.__qualname__ = job_type
    return run


BACKEND_RETRIES = 60  # about 30 s of Celery's jittered backoff, capped at 1 s a try


def register_tasks(app: Celery, cfg: P2PConfig) -> None:
    """Define the fleet's tasks on ``app`` with per-type time limits.

    Only an app that runs or calls tasks gets here (the coordinator never finalizes
    its app), so this is also where the worker's result backend is told to retry
    through a broker failover: without it, storing ``STARTED`` (before the job) or
    ``SUCCESS`` (after it; with ``result_extended`` Celery first reads the old meta,
    a read its backend does not retry) meets the dead primary and the task errors —
    an attempt spent on a job that never ran, or a finished job that reports nothing.
    The coordinator's reads keep failing fast (its tick retries them)."""
    app.conf.update(
        result_backend_always_retry=True,
        result_backend_max_retries=BACKEND_RETRIES,
        result_backend_max_sleep_between_retries_ms=1000,
    )
    for job_type, name in TASK_NAMES.items():
        soft, hard = time_limits(cfg, job_type if job_type != "noop" else "sync")
        app.task(
            name=name,
            shared=False,  # each app (one per config in tests) keeps its own limits
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            time_limit=hard,
            soft_time_limit=soft,
            typing=False,
            # User mistakes and workload failures are expected outcomes: logged as one
            # line, not as a worker traceback.
            throws=(ValidationError, ConfigError, WorkloadError),
        )(_task_body(job_type, name))

    @app.task(name="ringrift.plain_noop", typing=False, shared=False)
    def plain_noop(**kwargs: Any) -> dict[str, Any]:
        """Baseline for benchmarks/dispatch.py: no validation, no guards."""
        return {"status": "completed"}
