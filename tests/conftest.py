"""Fixtures shared by every test level."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ringrift_fleet.config import reload_feature_flags, reload_p2p_config
from tests.support.redis_server import RedisServer, start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set RINGRIFT_* variables with ``monkeypatch.setenv`` and re-read config after."""
    yield monkeypatch
    monkeypatch.undo()
    reload_p2p_config()
    reload_feature_flags()
