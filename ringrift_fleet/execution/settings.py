"""Celery settings for long GPU jobs, derived from :class:`P2PConfig` (pure).

Kept apart from the app so the choices can be read, and tested, in one place.
"""

from __future__ import annotations

from typing import Any

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.execution.queues import ANY_QUEUE

# Extra room above the longest hard limit before Redis hands an unacked message
# to another worker: the hard limit kills the job first, so a live job is never
# delivered twice by the transport.
VISIBILITY_MARGIN_S = 600.0


def visibility_timeout(cfg: P2PConfig) -> int:
    return int(cfg.longest_time_limit + VISIBILITY_MARGIN_S)


def time_limits(cfg: P2PConfig, job_type: str) -> tuple[float, float]:
    """(soft, hard) limits in seconds; the soft one lets a workload keep what it finished."""
    hard = cfg.time_limit(job_type)
    return hard * cfg.SOFT_LIMIT_FRACTION, hard


def celery_settings(cfg: P2PConfig) -> dict[str, Any]:
    from ringrift_fleet.execution.redis_clients import celery_broker_settings

    vt = visibility_timeout(cfg)
    transport = {
        # Redis redelivers an unacked message only after this; it must outlast the
        # longest job or a healthy long training run would be started twice.
        "visibility_timeout": vt,
    }
    # One URL, or kombu's sentinel:// transport + Celery's SentinelBackend (master_name,
    # sentinel_kwargs in the transport options): execution/redis_clients.py.
    broker = celery_broker_settings(cfg)
    return {
        "broker_url": broker["broker_url"],
        "result_backend": broker["result_backend"],
        # Acknowledge after the job, not on receipt: a worker that dies mid-job
        # leaves the message to be delivered again instead of losing it.
        "task_acks_late": True,
        # With acks_late, a killed pool process would otherwise count as done;
        # rejecting requeues it.  The redelivery cap lives in fencing (deliveries key).
        "task_reject_on_worker_lost": True,
        # One message at a time per process: a GPU job can run for hours, and a
        # prefetched second one would sit blocked behind it instead of going to
        # an idle GPU.
        "worker_prefetch_multiplier": 1,
        # Set everywhere Celery reads a visibility timeout (broker and result
        # backend transports); kombu reads the broker's.
        "broker_transport_options": {**transport, **broker["broker_transport_options"]},
        "result_backend_transport_options": {
            **transport,
            **broker["result_backend_transport_options"],
        },
        # A worker started before the broker keeps trying instead of exiting.
        "broker_connection_retry_on_startup": True,
        # Events on so Flower shows tasks live; STARTED so a running job is visible.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        # Results are for the scheduler to read soon after; don't keep them forever.
        "result_expires": int(cfg.RESULT_EXPIRES),
        "result_extended": True,
        # JSON only: task arguments come from the network; pickle would run code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Ad-hoc calls with no placement land where every worker looks.
        "task_default_queue": ANY_QUEUE,
        "task_create_missing_queues": True,
        # Recycle pool processes now and then: frees memory (and VRAM) a workload leaked.
        "worker_max_tasks_per_child": 50,
        "worker_hijack_root_logger": False,
        "broker_connection_timeout": 5,
    }
