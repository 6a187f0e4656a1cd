"""Celery settings for long GPU jobs are derived from the configuration (pure)."""

from __future__ import annotations

from ringrift_fleet.config import load_config
from ringrift_fleet.execution.app import create_app, route_task
from ringrift_fleet.execution.settings import celery_settings, time_limits, visibility_timeout


def test_settings_for_long_jobs() -> None:
    cfg = load_config({"RINGRIFT_P2P_TRAINING_TIME_LIMIT": "36000"})
    s = celery_settings(cfg)
    assert s["task_acks_late"] and s["task_reject_on_worker_lost"]
    assert s["worker_prefetch_multiplier"] == 1
    vt = visibility_timeout(cfg)
    assert vt > 36000
    assert s["broker_transport_options"]["visibility_timeout"] == vt
    assert s["result_backend_transport_options"]["visibility_timeout"] == vt
    assert s["worker_send_task_events"] and s["task_track_started"]
    assert s["result_expires"] == int(cfg.RESULT_EXPIRES)
    assert s["accept_content"] == ["json"]
    assert time_limits(cfg, "training") == (36000 * cfg.SOFT_LIMIT_FRACTION, 36000)


def test_app_uses_the_configured_broker_and_limits() -> None:
    cfg = load_config(
        {
            "RINGRIFT_BROKER_URL": "redis://10.0.0.9:6380/2",
            "RINGRIFT_RESULT_BACKEND": "redis://10.0.0.9:6380/3",
            "RINGRIFT_P2P_SELFPLAY_TIME_LIMIT": "100",
            "RINGRIFT_P2P_SOFT_LIMIT_FRACTION": "0.5",
        }
    )
    app = create_app(cfg)
    assert app.conf.broker_url == "redis://10.0.0.9:6380/2"
    assert app.conf.result_backend == "redis://10.0.0.9:6380/3"
    task = app.tasks["ringrift.selfplay"]
    assert (task.soft_time_limit, task.time_limit) == (50.0, 100.0)
    assert task.acks_late and task.reject_on_worker_lost
    for name in ("selfplay", "training", "evaluation", "sync", "noop"):
        assert f"ringrift.{name}" in app.tasks


def test_ad_hoc_routing() -> None:
    assert route_task("ringrift.training", (), {}, {}) == {"queue": "training.t3"}
    assert route_task("ringrift.training", (), {}, {"queue": "node.x"}) is None
    assert route_task("ringrift.selfplay", (), {}, {}) is None  # default queue: any
