"""Build the fleet's Celery app: the one place Celery is configured."""

from __future__ import annotations

import os
from typing import Any

from billiard.process import current_process
from celery import Celery
from celery.signals import worker_process_init

from ringrift_fleet.config import P2PConfig, get_p2p_config
from ringrift_fleet.execution import (
    failures,  # noqa: F401  (clients rebuild TaskInputError)
    worker_report,  # noqa: F401  (workers report, /metrics)
)
from ringrift_fleet.execution.jobs import TASK_NAMES
from ringrift_fleet.execution.queues import route_for
from ringrift_fleet.execution.settings import celery_settings
from ringrift_fleet.models import JobType

_TRAINING_TASK = TASK_NAMES["training"]


def route_task(
    name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None, **kw: Any
) -> dict[str, str] | None:
    """Placement for calls that name no queue (``celery call``): training goes to a
    training queue so it can only reach a worker able to train; the rest to ``any``."""
    if options.get("queue"):
        return None
    if name == _TRAINING_TASK:
        return {"queue": route_for(JobType.TRAINING)}
    return None


@worker_process_init.connect
def pin_gpu(**_: Any) -> None:
    """One pool process per GPU: process i of a multi-GPU worker sees only GPU i."""
    gpus = [g for g in os.environ.get("RINGRIFT_WORKER_GPUS", "").split(",") if g]
    if gpus:
        index = getattr(current_process(), "index", 0) or 0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[int(index) % len(gpus)]


def create_app(cfg: P2PConfig | None = None) -> Celery:
    """The app, with the fleet's tasks defined when it finalizes.

    A coordinator only sends tasks by name and reads results, which never
    finalizes the app; deferring the task definitions keeps the workloads (numpy,
    the artifact store) out of its memory.  A worker, ``celery call`` and
    ``app.tasks`` finalize it, and so see every task.
    """
    cfg = cfg or get_p2p_config()
    app = Celery("ringrift_fleet", set_as_current=False)
    app.conf.update(celery_settings(cfg))
    app.conf.task_routes = (route_task,)
    limits_cfg = cfg

    def define_tasks(sender: Celery, **_: Any) -> None:
        from ringrift_fleet.execution.tasks import register_tasks

        register_tasks(sender, limits_cfg)

    app.on_after_finalize.connect(define_tasks, weak=False)
    return app
