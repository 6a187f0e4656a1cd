"""pysyncobj's noisy truncation message is rate-limited, never silenced; others pass."""

from __future__ import annotations

import logging

import pytest

from ringrift_fleet.consensus.raft_state import _RateLimitTruncation


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("pysyncobj.syncobj", logging.CRITICAL, __file__, 1, msg, None, None)


def test_one_truncation_line_a_minute_with_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("ringrift_fleet.consensus.raft_state.time.monotonic", lambda: clock[0])
    f = _RateLimitTruncation(every=60.0)
    first = record("truncating already-applied log entries from index 5")
    assert f.filter(first)
    assert [f.filter(record("truncating already-applied x")) for _ in range(3)] == [False] * 3
    assert f.filter(record("something else entirely"))
    clock[0] += 61
    later = record("truncating already-applied log entries from index 9")
    assert f.filter(later)
    assert "and 3 more like it" in str(later.msg)
