"""The fleet's Celery app, so ``celery -A ringrift_fleet worker|call|inspect|flower`` works.

Broker and result backend come from configuration (``RINGRIFT_BROKER_URL``,
``RINGRIFT_RESULT_BACKEND``, or their ``RINGRIFT_P2P_*`` names), read when this
module is imported.  Settings and their reasons: :mod:`ringrift_fleet.execution.settings`.
"""

from __future__ import annotations

from ringrift_fleet.execution.app import create_app

app = create_app()

__all__ = ["app"]
