"""The broker as one URL or a Sentinel set: configuration, the clients built from it,
Celery's settings, and the WAIT after fence writes (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.sentinel import SentinelConnectionPool

from ringrift_fleet.config import known_env_vars, load_config, parse_sentinels
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.execution.broker import url_of
from ringrift_fleet.execution.redis_clients import (
    ReplicaWait,
    broker_spec,
    celery_broker_settings,
    redis_client,
    topology,
)
from ringrift_fleet.execution.settings import celery_settings

SET3 = {"RINGRIFT_BROKER_SENTINELS": "10.0.0.1:26379,10.0.0.2:26380,10.0.0.3"}


def test_sentinel_list_parses_with_default_port_and_ipv6() -> None:
    assert parse_sentinels("a:1, b ,[::1]:26380") == [("a", 1), ("b", 26379), ("::1", 26380)]
    assert parse_sentinels("") == []


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("a:1,,b", "entry 2 is empty"),
        ("a:0", "port must be 1-65535"),
        ("a:x", "port must be 1-65535"),
        ("a:1,a:1", "listed twice"),
        ("redis://a:1", "is not host:port"),
        ("[::1", "is not [ipv6]:port"),
    ],
)
def test_a_bad_sentinel_list_names_the_variable_and_entry(raw: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"RINGRIFT_BROKER_SENTINELS": raw})
    assert str(info.value).startswith(f"RINGRIFT_BROKER_SENTINELS={raw!r}: ")
    assert fragment in str(info.value)


def test_url_and_sentinels_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="RINGRIFT_BROKER_URL and RINGRIFT_BROKER_SENTINELS"):
        load_config({**SET3, "RINGRIFT_BROKER_URL": "redis://h:6379/0"})


def test_a_bad_master_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="RINGRIFT_BROKER_MASTER_NAME='my master'"):
        load_config({**SET3, "RINGRIFT_BROKER_MASTER_NAME": "my master"})


def test_the_new_variables_are_known() -> None:
    for var in (
        "RINGRIFT_BROKER_SENTINELS",
        "RINGRIFT_BROKER_MASTER_NAME",
        "RINGRIFT_BROKER_PASSWORD",
        "RINGRIFT_BROKER_SENTINEL_PASSWORD",
        "RINGRIFT_P2P_BROKER_WAIT_TIMEOUT",
    ):
        assert var in known_env_vars()


def test_single_url_mode_is_unchanged_and_takes_the_password() -> None:
    cfg = load_config({"RINGRIFT_BROKER_URL": "redis://h:6379/2"})
    s = celery_settings(cfg)
    assert s["broker_url"] == s["result_backend"] == "redis://h:6379/2"
    assert "master_name" not in s["broker_transport_options"]
    cfg = load_config(
        {"RINGRIFT_BROKER_URL": "redis://h:6379/2", "RINGRIFT_BROKER_PASSWORD": "p/w"}
    )
    assert broker_spec(cfg).url == "redis://:p%2Fw@h:6379/2"
    assert redis_client(cfg).connection_pool.connection_kwargs["password"] == "p/w"


def test_sentinel_mode_gives_celery_the_sentinel_transport_and_backend() -> None:
    cfg = load_config(
        {
            **SET3,
            "RINGRIFT_BROKER_MASTER_NAME": "fleet",
            "RINGRIFT_BROKER_PASSWORD": "redispw",
            "RINGRIFT_BROKER_SENTINEL_PASSWORD": "sentpw",
        }
    )
    s = celery_settings(cfg)
    assert s["broker_url"] == (
        "sentinel://:redispw@10.0.0.1:26379/0;sentinel://:redispw@10.0.0.2:26380/0;"
        "sentinel://:redispw@10.0.0.3:26379/0"
    )
    assert s["result_backend"] == s["broker_url"]
    for key in ("broker_transport_options", "result_backend_transport_options"):
        opts = s[key]
        assert opts["master_name"] == "fleet"
        assert opts["sentinel_kwargs"] == {"password": "sentpw"}
        assert opts["visibility_timeout"] > 3600  # the long-job setting is kept
    # Celery picks kombu's SentinelChannel and its SentinelBackend from these.
    from ringrift_fleet.execution.app import create_app

    app = create_app(cfg)
    assert type(app.backend).__name__ == "SentinelBackend"
    with app.connection_for_write() as conn:
        assert conn.transport_cls == "sentinel"
        assert "redispw" not in conn.as_uri()


def test_sentinel_mode_clients_follow_the_primary() -> None:
    cfg = load_config({**SET3, "RINGRIFT_BROKER_PASSWORD": "pw"})
    client = redis_client(cfg, timeout=2)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "ringrift"
    assert pool.connection_kwargs["password"] == "pw"
    assert url_of(client) == "sentinel://ringrift"


def test_celery_gets_no_separate_sentinel_options_for_an_explicit_backend() -> None:
    cfg = load_config({**SET3, "RINGRIFT_RESULT_BACKEND": "redis://other:6379/1"})
    s = celery_broker_settings(cfg)
    assert s["result_backend"] == "redis://other:6379/1"
    assert s["result_backend_transport_options"] == {}


def test_single_mode_topology_needs_no_io() -> None:
    view = topology(load_config({"RINGRIFT_BROKER_URL": "redis://:secret@h:1/0"}))
    assert view == {"mode": "single", "url": "redis://:***@h:1/0"}


class FakeRedis:
    def __init__(self, replicas: int, acks: int) -> None:
        self.replicas, self.acks = replicas, acks
        self.calls: list[Any] = []

    def info(self, section: str) -> dict[str, Any]:
        self.calls.append(("info", section))
        return {"connected_slaves": self.replicas}

    def wait(self, n: int, ms: int) -> int:
        self.calls.append(("wait", n, ms))
        return self.acks


def test_replica_wait_waits_for_one_replica_only_when_there_is_one() -> None:
    now = [0.0]
    r = FakeRedis(replicas=2, acks=1)
    w = ReplicaWait(r, 0.25, clock=lambda: now[0])
    assert w() and w()
    assert r.calls == [("info", "replication"), ("wait", 1, 250), ("wait", 1, 250)]
    none = FakeRedis(replicas=0, acks=0)
    w = ReplicaWait(none, 0.25, clock=lambda: now[0])
    assert w() and w()
    assert ("wait", 1, 250) not in none.calls  # nothing to wait for: no timeout burnt


def test_replica_wait_reports_an_unconfirmed_write_and_looks_again() -> None:
    now = [0.0]
    r = FakeRedis(replicas=1, acks=0)
    w = ReplicaWait(r, 0.1, clock=lambda: now[0])
    assert not w()
    assert w.unconfirmed == 1
    assert not w()
    assert r.calls.count(("info", "replication")) == 2  # re-read after a failed WAIT


def test_replica_wait_is_off_for_a_single_redis() -> None:
    r = FakeRedis(replicas=1, acks=0)
    assert ReplicaWait(r, 0.1, enabled=False)()
    assert r.calls == []


def test_status_rows_show_primary_replicas_sentinels_and_the_last_failover() -> None:
    from ringrift_fleet.execution.redis_clients import topology_rows

    assert topology_rows({"mode": "single", "url": "redis://h"}) == []
    assert topology_rows(None) == []
    topo = {
        "mode": "sentinel",
        "master_name": "ringrift",
        "primary": "10.0.0.2:6379",
        "epoch": 3,
        "agree": False,
        "replicas": [{"addr": "10.0.0.1:6379", "link": "err"}],
        "sentinels": [
            {"sentinel": "10.0.0.1:26379", "up": False},
            {"sentinel": "10.0.0.2:26379", "up": True, "primary": "10.0.0.2:6379"},
        ],
        "sentinels_up": 1,
        "failovers": [{"from": "10.0.0.1:6379", "to": "10.0.0.2:6379", "epoch": 3}],
    }
    rows = dict(topology_rows(topo))
    assert rows["broker primary"] == "10.0.0.2:6379 [ringrift, epoch 3] (Sentinels disagree!)"
    assert rows["broker replicas"] == "10.0.0.1:6379 (err)"
    assert rows["sentinels"] == "1/2 up: 10.0.0.1:26379 DOWN, 10.0.0.2:26379 -> 10.0.0.2:6379"
    assert rows["last failover"] == "10.0.0.1:6379 -> 10.0.0.2:6379 (epoch 3)"


def test_a_broker_group_of_three_is_a_sentinel_set_on_ordinary_hosts() -> None:
    """The Ansible inventory's `broker` group with 3 hosts (the voters): they keep
    their role (and their workers); the first is named broker_host for Flower."""
    from ringrift_fleet import inventory
    from tests.unit.test_inventory import ansible_json

    data = ansible_json()
    data["broker"] = {"hosts": ["gh-1", "h-1", "c-1"]}
    inv = inventory.from_ansible_data(data, "inventory.ini")
    assert inv.coordinator.broker_host == "c-1"
    assert inv.host("gh-1").role != "broker" and inv.host("b-1").role != "broker"


class FakeBroker:
    def __init__(self) -> None:
        self.lists: dict[str, list[bytes]] = {}
        self.unacked: dict[str, bytes] = {}
        self.keys: set[str] = set()

    def exists(self, *keys: str) -> int:
        return sum(k in self.keys for k in keys)

    def lrange(self, key: str, start: int, end: int) -> list[bytes]:
        return list(self.lists.get(key, []))

    def hscan_iter(self, key: str) -> Any:
        return iter(self.unacked.items())


def _message(task_id: str) -> str:
    import json

    return json.dumps({"headers": {"id": task_id}, "properties": {}})


def test_a_message_missing_for_the_grace_period_is_reported_lost_once() -> None:
    import json

    from ringrift_fleet.execution.broker import PRIORITY_SEP, LostMessages

    now = [0.0]
    b = FakeBroker()
    lost = LostMessages(b, grace_s=10, cache_s=0, clock=lambda: now[0])
    b.lists["node.a"] = [_message("j1.a1").encode()]
    b.lists["node.a" + PRIORITY_SEP + "3"] = [_message("j2.a1").encode()]
    b.keys.add("ringrift:run:j3")  # a worker runs it
    b.unacked["tag"] = json.dumps([_message("j4.a1"), "", "node.a"]).encode()
    for t in (0.0, 30.0):
        now[0] = t
        assert not any(lost.lost("node.a", f"{j}.a1", j) for j in ("j1", "j2", "j3"))
    now[0] = 31.0
    assert not lost.lost("node.a", "j4.a1", "j4")  # only in unacked: first seen missing
    now[0] = 35.0
    assert not lost.lost("node.a", "j4.a1", "j4")
    b.lists["node.a"].append(_message("j4.a1").encode())  # it was only in flight
    now[0] = 42.0
    assert not lost.lost("node.a", "j4.a1", "j4")
    b.lists["node.a"].pop()
    now[0] = 43.0
    assert not lost.lost("node.a", "j4.a1", "j4")  # the clock starts again
    now[0] = 53.5
    assert lost.lost("node.a", "j4.a1", "j4")
    assert not lost.lost("node.a", "j4.a1", "j4")  # reported once, then a fresh grace
    assert lost.reported == 1


class FakeSentinelNode:
    """One Sentinel's replies: the primary it names, or down (a connection error)."""

    def __init__(self, primary: str | None, epoch: int = 0) -> None:
        self.primary, self.epoch = primary, epoch

    def execute_command(self, *args: str) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError

        if self.primary is None:
            raise RedisConnectionError("Sentinel down")
        if args[0] == "SENTINEL MASTER":
            ip, port = self.primary.split(":")
            return {"ip": ip, "port": port, "config-epoch": str(self.epoch), "flags": "master"}
        return []


class FakeSentinelSet:
    def __init__(self, *nodes: FakeSentinelNode) -> None:
        self.sentinels = list(nodes)


def test_a_failover_is_reported_once_even_while_one_sentinel_still_names_the_old_primary() -> None:
    """A stale Sentinel (it has not heard the new config yet) must not hide the
    failover the majority already shows — in the CI run that did, /status never
    listed it.  Each failover is one event and one webhook."""
    from ringrift_fleet.execution.redis_clients import FailoverWatch

    now = [0.0]
    sent: list[dict[str, Any]] = []
    watch = FailoverWatch(
        load_config(SET3), notify=lambda **kw: sent.append(kw), clock=lambda: now[0]
    )
    a, b = "10.0.0.1:6379", "10.0.0.2:6379"
    nodes = [FakeSentinelNode(a), FakeSentinelNode(a), FakeSentinelNode(a)]
    watch._sentinel = FakeSentinelSet(*nodes)  # type: ignore[assignment]

    def look(*views: tuple[str | None, int]) -> dict[str, Any] | None:
        for node, (primary, epoch) in zip(nodes, views, strict=True):
            node.primary, node.epoch = primary, epoch
        now[0] += 1.0
        return watch.poll()

    assert look((a, 0), (a, 0), (a, 0)) is None
    assert watch.primary == a
    # two of three name the new primary; the third is stale
    event = look((a, 0), (b, 1), (b, 1))
    assert event is not None and (event["from"], event["to"], event["epoch"]) == (a, b, 1)
    assert watch.status()["failovers"] == [event]
    assert watch.status()["agree"] is False
    assert look((b, 1), (b, 1), (b, 1)) is None  # the stale one catches up: no second event
    # one Sentinel alone names another primary (the rest down): no majority, no event
    assert look((None, 0), (None, 0), (a, 2)) is None
    assert watch.primary == b
    assert [s["event_type"] for s in sent] == ["broker_failover"]
    # within every_s nobody is asked
    assert watch.poll() is None
