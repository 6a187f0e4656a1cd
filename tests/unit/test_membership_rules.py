"""The pure rules of the HTTP fallback and the hybrid manager."""

from __future__ import annotations

import pytest

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.membership.http import HttpHeartbeatMembership, expired, parse_heartbeat
from ringrift_fleet.membership.hybrid import choose_authority


@pytest.mark.parametrize(
    ("started", "healthy", "authority"),
    [(True, True, "swim"), (True, False, "http"), (False, True, "http"), (False, False, "http")],
)
def test_swim_answers_only_while_started_and_healthy(
    started: bool, healthy: bool, authority: str
) -> None:
    assert choose_authority(started, healthy) == authority


def test_a_peer_is_dead_only_after_peer_timeout_of_silence() -> None:
    seen = {"a": 100.0, "b": 90.0, "c": 84.9}
    assert expired(seen, now=100.0, timeout=15.0) == {"c"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "heartbeat"),
        ({}, "heartbeat.node_id"),
        ({"node_id": ""}, "heartbeat.node_id"),
        ({"node_id": "x" * 200}, "heartbeat.node_id"),
        ({"node_id": "a", "incarnation": "1"}, "heartbeat.incarnation"),
        ({"node_id": "a", "summary": []}, "heartbeat.summary"),
    ],
)
def test_malformed_heartbeats_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        parse_heartbeat(payload)


def test_heartbeats_drive_join_metadata_and_dead_events_on_a_virtual_clock() -> None:
    now = [0.0]
    cfg = P2PConfig(HEARTBEAT_INTERVAL=5.0, PEER_TIMEOUT=15.0)
    m = HttpHeartbeatMembership("me", {"a": "http://a:8770"}, config=cfg, clock=lambda: now[0])
    heard: list[MembershipEvent] = []
    m.add_listener(heard.append)
    m.record_heartbeat({"node_id": "a", "incarnation": 1, "summary": {"metadata": {"gpu": "H100"}}})
    assert m.get_alive_peers() == ["a"] and m.peer_metadata("a") == {"gpu": "H100"}
    now[0] = 10.0
    m.record_heartbeat({"node_id": "a", "incarnation": 2, "summary": {"metadata": {"gpu": "A100"}}})
    now[0] = 24.0
    m.check(now[0])
    assert m.is_peer_alive("a")
    now[0] = 25.5
    m.check(now[0])
    assert not m.is_peer_alive("a") and m.get_alive_peers() == []
    assert [e.kind for e in heard] == ["join", "metadata", "dead"]
    m.record_heartbeat({"node_id": "a", "incarnation": 3, "summary": {"metadata": {"gpu": "A100"}}})
    assert heard[-1].kind == "alive"
    with pytest.raises(ValidationError, match="is this node"):
        m.record_heartbeat({"node_id": "me"})
