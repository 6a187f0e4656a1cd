"""The :8770 server of a real coordinator process, and `ringrift-fleet status` against it."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.coordinators import CLUSTER_KEY, LocalFleet, get_json, make_op, post_json
from tests.support.procs import PYTHON, REPO, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    fleet = LocalFleet(
        tmp_path_factory.mktemp("status") / "fleet",
        voters=1,
        extra_env={"RINGRIFT_P2P_MALLOC_TRIM_INTERVAL": "0.5"},
    )
    try:
        fleet.start_all()
        assert fleet.wait_leader(10), fleet.log("n0")
        yield fleet
    finally:
        fleet.stop_all()


def http_error(fn: object) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as info:
        fn()  # type: ignore[operator]
    return info.value


@pytest.mark.timeout(60)
def test_status_has_the_reference_fields(single: LocalFleet) -> None:
    assert single.op("n0", make_op("add_work.v1", work_id="a", payload={}))["ok"]
    s = single.status("n0")
    assert s is not None
    for key in ("node_id", "role", "leader_id", "term", "alive_peers", "peers", "voters"):
        assert key in s, key
    assert s["node_id"] == "n0" and s["role"] == "leader" and s["leader_id"] == "n0"
    assert s["voters"] == ["n0"] and isinstance(s["alive_peers"], int)
    sr = s["swim_raft"]
    assert sr["membership_mode"] == "http" and sr["consensus_mode"] == "raft"
    assert set(sr["swim"]) >= {"enabled", "started", "alive_count"}
    assert sr["raft"]["enabled"] and sr["raft"]["available"] and sr["raft"]["is_leader"]
    assert sr["raft"]["leader"] == "n0" and sr["raft"]["term"] == s["term"]
    # the snapshot refreshes in the background: the new item shows up shortly
    from tests.support.procs import wait_for

    assert wait_for(lambda: single.status("n0")["work_queue"]["pending"] >= 1, 5)


@pytest.mark.timeout(60)
def test_the_coordinator_gives_freed_heap_memory_back(single: LocalFleet) -> None:
    from tests.support.procs import wait_for

    def memory() -> dict[str, object]:
        return dict(single.status("n0").get("memory") or {})

    assert wait_for(lambda: int(str(memory().get("trims", 0))) >= 2, 10), memory()
    shown = memory()
    assert shown["malloc_trim"] is True and float(str(shown["rss_mb"])) > 10, shown
    assert float(str(shown["last_trim_ms"])) < 1000, shown


@pytest.mark.timeout(60)
def test_health_and_prometheus_metrics(single: LocalFleet) -> None:
    url = single.nodes["n0"].url
    assert get_json(url + "/health")["ok"] is True
    with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
        text = resp.read().decode()
    assert 'ringrift_is_leader{node="n0"} 1' in text
    assert "# TYPE ringrift_work_items gauge" in text
    assert 'ringrift_work_items{node="n0",state="pending"}' in text
    # host load, and how long ledger writes take: one through /consensus/op, timed
    assert 'ringrift_host_load_score{node="n0"}' in text
    assert single.op("n0", make_op("add_work.v1", work_id="timed", payload={}))["ok"]
    with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
        after = {
            (s.name, s.labels.get("op"), s.labels.get("outcome"), s.labels.get("le")): s.value
            for fam in text_string_to_metric_families(resp.read().decode())
            for s in fam.samples
        }
    name = "ringrift_ledger_op_duration_seconds"
    count = after[(f"{name}_count", "add_work", "ok", None)]
    assert count >= 1
    assert after[(f"{name}_bucket", "add_work", "ok", "+Inf")] == count
    assert 0 < after[(f"{name}_sum", "add_work", "ok", None)] < 2.0 * count  # within op_timeout


@pytest.mark.timeout(60)
def test_mutating_routes_need_the_cluster_token(single: LocalFleet) -> None:
    url = single.nodes["n0"].url + "/consensus/op"
    body = make_op("add_work.v1", work_id="sneaky", payload={})
    assert http_error(lambda: post_json(url, body, token=None)).code == 401
    assert http_error(lambda: post_json(url, body, token="wrong")).code == 401
    ledger_url = single.nodes["n0"].url + "/consensus/ledger"
    assert http_error(lambda: get_json(ledger_url)).code == 401
    assert "sneaky" not in single.ledger("n0")["work"]
    assert post_json(url, body, token=CLUSTER_KEY)["ok"]
    # a copy that gives its revision gets only what changed since
    rev = single.ledger("n0")["rev"]
    assert post_json(url, make_op("add_work.v1", work_id="later", payload={}), token=CLUSTER_KEY)[
        "ok"
    ]
    delta = get_json(f"{ledger_url}?since={rev}", token=CLUSTER_KEY)["changes"]
    assert [w["work_id"] for w in delta["work"]] == ["later"] and delta["forgotten"] == []
    err = http_error(lambda: get_json(f"{ledger_url}?since=yesterday", token=CLUSTER_KEY))
    assert err.code == 400 and "'since'" in json.loads(err.read())["error"]
    # the other parts' routes are mounted (and guard themselves the same way)
    artifacts = single.nodes["n0"].url + "/artifacts"
    assert http_error(lambda: get_json(artifacts)).code == 401
    assert isinstance(get_json(artifacts, token=CLUSTER_KEY), (dict, list))
    heartbeat = single.nodes["n0"].url + "/heartbeat"
    assert http_error(lambda: post_json(heartbeat, {"node_id": "x"}, token=None)).code == 401


@pytest.mark.timeout(120)
def test_a_crowd_of_new_copies_gets_one_encoding_of_the_replica(single: LocalFleet) -> None:
    """After a leader change every non-voter asks the new leader for the whole
    replica at once.  One encoding serves them all (it was one per asker, on the
    event loop: at 30 hosts the leader's /status, heartbeats and SWIM went quiet
    for minutes and membership declared it dead)."""
    from concurrent.futures import ThreadPoolExecutor

    url = single.nodes["n0"].url
    blob = "x" * 2000
    with ThreadPoolExecutor(8) as pool:
        oks = list(
            pool.map(
                lambda i: single.op(
                    "n0", make_op("add_work.v1", work_id=f"big{i}", payload={"b": blob})
                )["ok"],
                range(200),
            )
        )
    assert all(oks)
    before = (single.status("n0") or {}).get("ledger_copies") or {}
    with ThreadPoolExecutor(30) as pool:
        copies = list(
            pool.map(
                lambda _: get_json(url + "/consensus/ledger", token=CLUSTER_KEY, timeout=30),
                range(30),
            )
        )
    revs = {c["state"]["rev"] for c in copies}
    assert all(len(c["state"]["work"]) >= 200 for c in copies)
    assert len(revs) <= 2, revs  # one replica, encoded at most about once a second
    from tests.support.procs import wait_for

    def counts() -> dict[str, int]:
        return (single.status("n0") or {}).get("ledger_copies") or {}

    assert wait_for(lambda: counts().get("full_served", 0) >= before.get("full_served", 0) + 30, 5)
    encoded = counts()["full_encoded"] - before.get("full_encoded", 0)
    assert 1 <= encoded <= 3, counts()
    assert single.status("n0") is not None


@pytest.mark.timeout(60)
def test_malformed_json_gets_a_400_naming_the_problem(single: LocalFleet) -> None:
    url = single.nodes["n0"].url + "/consensus/op"
    err = http_error(lambda: post_json(url, b"{not json"))
    assert err.code == 400
    assert "not valid JSON" in json.loads(err.read())["error"]
    err = http_error(lambda: post_json(url, [1, 2]))
    assert err.code == 400 and "JSON object" in json.loads(err.read())["error"]
    err = http_error(lambda: post_json(url, {"op": "drop_everything"}))
    assert err.code == 400 and "'op'" in json.loads(err.read())["error"]
    # the server is still fine afterwards
    assert single.status("n0") is not None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "status", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.timeout(60)
def test_status_command_prints_a_table_and_json(single: LocalFleet) -> None:
    host = f"127.0.0.1:{single.nodes['n0'].status_port}"
    table = cli("--host", host)
    assert table.returncode == 0, table.stderr
    assert "leader" in table.stdout and "n0" in table.stdout
    assert "work queue" in table.stdout and "pending" in table.stdout and "pruned" in table.stdout
    raw = cli("--host", host, "--json")
    assert raw.returncode == 0
    assert json.loads(raw.stdout)["leader_id"] == "n0"


@pytest.mark.timeout(60)
def test_status_command_reports_an_unreachable_host_in_one_line() -> None:
    out = cli("--host", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "cannot reach" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.timeout(60)
def test_status_p99_under_concurrent_clients(single: LocalFleet) -> None:
    """Behaviour only (everyone answered, all 200s); latency targets live in the benchmark."""
    import concurrent.futures

    url = single.nodes["n0"].url + "/status"
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: get_json(url, timeout=10)["node_id"], range(200)))
    assert results == ["n0"] * 200


def coordinator_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ringrift_fleet", "coordinator", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})},
    )


@pytest.mark.timeout(60)
def test_coordinator_names_a_bad_hosts_file_or_node_in_one_line(tmp_path: Path) -> None:
    missing = coordinator_cli("--hosts-file", str(tmp_path / "nope.yaml"), "--node", "a")
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  a: {address: 127.0.0.1}\nraft_voters: [a]\n")
    unknown = coordinator_cli("--hosts-file", str(hosts), "--node", "zz")
    assert unknown.returncode == 2
    assert "'zz' is not a host" in unknown.stderr and "Traceback" not in unknown.stderr
    bad_env = coordinator_cli(
        "--hosts-file", str(hosts), "--node", "a", env={"RINGRIFT_P2P_RAFT_MIN_TIMEOUT": "soon"}
    )
    assert bad_env.returncode == 2 and "RINGRIFT_P2P_RAFT_MIN_TIMEOUT" in bad_env.stderr


@pytest.mark.timeout(90)
def test_the_coordinator_command_attaches_the_scheduler(tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    from tests.support.procs import wait_for

    fleet = LocalFleet(
        tmp_path / "fleet",
        voters=1,
        scheduler=True,
        extra_env={"RINGRIFT_BROKER_URL": redis_server.url},
    )
    try:
        fleet.start_all()
        assert fleet.wait_leader(10), fleet.log("n0")
        assert wait_for(lambda: bool(fleet.status("n0").get("scheduler")), 15), fleet.log("n0")
        assert "error" not in fleet.status("n0")["scheduler"]
    finally:
        fleet.stop_all()


@pytest.mark.timeout(90)
def test_a_stalled_coordinator_says_so_with_its_stacks(tmp_path: Path) -> None:
    """A coordinator frozen for 2.5 s (SIGSTOP: no CPU at all, as on an overloaded
    host) logs the stall with every thread's stack and counts it in /status and
    /metrics, and goes on serving."""
    import os
    import signal
    import time

    from tests.support.procs import wait_for

    fleet = LocalFleet(
        tmp_path / "fleet", voters=1, extra_env={"RINGRIFT_P2P_COORDINATOR_STALL_S": "1.0"}
    )
    try:
        fleet.start_all()
        assert fleet.wait_leader(10), fleet.log("n0")
        stalls = fleet.status("n0")["stalls"]
        assert stalls["threshold_s"] == 1.0
        before = stalls["stalls"]
        proc = fleet.nodes["n0"].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)
        finally:
            os.kill(proc.pid, signal.SIGCONT)

        def counted() -> bool:
            s = fleet.status("n0")
            return s is not None and s["stalls"]["stalls"] > before

        assert wait_for(counted, 10), fleet.log("n0")
        shown = fleet.status("n0")["stalls"]
        assert 1.5 <= shown["max_s"] <= 10.0, shown
        log = (fleet.workdir / "n0.log").read_text()
        assert "coordinator stalled" in log, log[-3000:]
        assert "thread MainThread:" in log and "File " in log, log[-3000:]  # the stacks
        with urllib.request.urlopen(fleet.nodes["n0"].url + "/metrics", timeout=2) as resp:
            text = resp.read().decode()
        assert f'ringrift_coordinator_stalls_total{{node="n0"}} {float(shown["stalls"])}' in text
    finally:
        fleet.stop_all()
