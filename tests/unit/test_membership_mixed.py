"""The mixed-mode rule (membership/mixed.py): HTTP-only peers beside SWIM, offline."""

from __future__ import annotations

import pytest

from ringrift_fleet.config import P2PConfig
from ringrift_fleet.errors import ValidationError
from ringrift_fleet.membership.base import MembershipEvent
from ringrift_fleet.membership.http import HttpHeartbeatMembership
from ringrift_fleet.membership.mixed import HttpOnlyPeers


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(swim_alive: set[str], swim_known: set[str]) -> tuple[HttpOnlyPeers, Clock]:
    clock = Clock()
    http = HttpHeartbeatMembership(
        "me",
        {"a": "http://a", "b": "http://b", "c": "http://c"},
        P2PConfig(HEARTBEAT_INTERVAL=1.0, PEER_TIMEOUT=3.0),
        clock=clock,
    )
    return HttpOnlyPeers(http, swim_alive.__contains__, swim_known.__contains__), clock


def beat(mixed: HttpOnlyPeers, name: str, swim: bool | None) -> None:
    body: dict[str, object] = {"node_id": name, "incarnation": 1}
    if swim is not None:
        body["swim"] = swim
    mixed.http.record_heartbeat(body)


def ev(kind: str, node: str) -> MembershipEvent:
    return MembershipEvent(kind, node, 1)


def test_a_peer_that_says_it_speaks_no_swim_is_alive_while_its_heartbeats_arrive() -> None:
    mixed, clock = make(swim_alive={"a"}, swim_known={"a", "b"})
    assert mixed.http.speaks_swim is True
    beat(mixed, "b", swim=False)
    beat(mixed, "c", swim=True)
    assert mixed.extra_alive() == ["b"]  # c speaks SWIM: SWIM alone judges it
    assert mixed.alive_over_http("b") and not mixed.alive_over_http("c")
    clock.t += 3.5  # PEER_TIMEOUT passes without a heartbeat
    assert mixed.extra_alive() == [] and not mixed.alive_over_http("b")


def test_an_older_peer_that_says_nothing_is_http_only_unless_swim_knows_it() -> None:
    mixed, _ = make(swim_alive=set(), swim_known={"a"})
    beat(mixed, "a", swim=None)
    beat(mixed, "b", swim=None)
    assert not mixed.http_only("a") and mixed.http_only("b")


def test_swim_hearing_a_peer_join_ends_its_http_only_status() -> None:
    mixed, _ = make(swim_alive=set(), swim_known=set())
    beat(mixed, "b", swim=False)
    assert mixed.http_only("b")
    assert mixed.pass_swim_event(ev("join", "b"))
    assert not mixed.http_only("b")


def test_swim_deaths_of_a_peer_alive_over_http_are_held_back_others_pass() -> None:
    mixed, _ = make(swim_alive=set(), swim_known={"b", "c"})
    beat(mixed, "b", swim=False)  # rolled back to HTTP: SWIM says it left
    assert not mixed.pass_swim_event(ev("left", "b"))
    assert not mixed.pass_swim_event(ev("dead", "b"))
    assert mixed.pass_swim_event(ev("dead", "c"))  # a SWIM speaker: SWIM decides


def test_heartbeat_events_pass_only_for_http_only_peers_swim_does_not_hold() -> None:
    mixed, _ = make(swim_alive={"a"}, swim_known={"a"})
    beat(mixed, "a", swim=False)
    beat(mixed, "b", swim=False)
    beat(mixed, "c", swim=True)
    assert not mixed.pass_http_event(ev("join", "a"))  # SWIM holds it alive
    assert mixed.pass_http_event(ev("join", "b"))
    assert not mixed.pass_http_event(ev("dead", "c"))


def test_heartbeats_go_only_to_peers_swim_does_not_hold() -> None:
    mixed, _ = make(swim_alive={"a"}, swim_known={"a"})
    assert not mixed.wants_heartbeat("a") and mixed.wants_heartbeat("b")


def test_the_summary_lists_http_only_peers_as_alive_via_http() -> None:
    mixed, _ = make(swim_alive=set(), swim_known=set())
    beat(mixed, "b", swim=False)
    out = mixed.add_to_summary({"members": {"c": {"state": "dead"}}, "alive_count": 1}, 2)
    assert out["members"]["b"]["state"] == "alive" and out["members"]["b"]["via"] == "http"
    assert out["http_only_peers"] == ["b"] and out["alive_count"] == 2 and out["dead_count"] == 1


def test_a_heartbeat_whose_swim_field_is_not_a_boolean_is_refused_by_name() -> None:
    mixed, _ = make(swim_alive=set(), swim_known=set())
    with pytest.raises(ValidationError, match=r"heartbeat\.swim"):
        mixed.http.record_heartbeat({"node_id": "b", "swim": "yes"})
