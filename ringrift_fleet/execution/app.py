"""Build the fleet's Celery app: the one place Celery is configured."""

from __future__ import annotations

from typing import Any

from celery import Celery

from ringrift_fleet.config import P2PConfig, get_p2p_config
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


def create_app(cfg: P2PConfig | None = None) -> Celery:
    from ringrift_fleet.execution.tasks import register_tasks

    cfg = cfg or get_p2p_config()
    app = Celery("ringrift_fleet", set_as_current=False)
    app.conf.update(celery_settings(cfg))
    app.conf.task_routes = (route_task,)
    register_tasks(app, cfg)
    return app
