"""monitoring/: promtool checks the rules and a generated config; a real Prometheus scrapes
two real coordinators, shows their series, and fires RingriftNoLeader when the leader dies."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.coordinators import LocalFleet
from tests.support.prereq import need_command
from tests.support.procs import PYTHON, REPO, free_port, spawn, stop, wait_for

pytestmark = pytest.mark.integration

RULES = REPO / "ringrift_fleet" / "alerts.yaml"
INVENTORY = """\
hosts:
  gpu-1: {address: 10.0.0.1, gpu: H100, gpu_count: 1, gpu_vram_gb: 80, role: gpu}
  gpu-2: {address: 10.0.0.2, gpu: RTX4090, gpu_count: 1, gpu_vram_gb: 24, role: gpu, status_port: 8771}
  old-1: {address: 10.0.0.9, status: retired}
  broker-1: {address: 10.0.0.3, role: broker}
coordinator: {broker_host: broker-1}
raft_voters: [gpu-1]
"""


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = need_command("promtool")
    out = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 14 rules found" in out.stdout


def test_every_alert_has_a_summary_and_a_runbook_section() -> None:
    ops = (REPO / "docs" / "operations.md").read_text()
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(rules) == 14
    for rule in rules:
        assert rule["annotations"]["summary"], rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert']}" in ops, (
            f"docs/operations.md has no runbook for {rule['alert']}"
        )


def test_dump_failures_alert_fires_on_repeats_not_on_one(tmp_path: Path) -> None:
    """promtool's rule unit test: one failed dump (a snapshot superseded it) is quiet;
    three in 30 minutes (a full disk) fire, for that node only."""
    fires_for_one_node(
        tmp_path,
        "RingriftRaftDumpFailing",
        "ringrift_raft_dump_failures_total",
        {"v1": "0 0 1 2 3 3 3", "v2": "0 1 1 1 1 1 1"},
        quiet_at="5m",
        fires_at="20m",
        summary="Raft full dumps on v1 keep failing: its log is not compacted",
    )


def test_stall_alert_fires_on_a_coordinator_that_keeps_stalling(tmp_path: Path) -> None:
    """One stall (a burst of load) is quiet; three within 15 minutes fire, for
    that node only."""
    fires_for_one_node(
        tmp_path,
        "RingriftCoordinatorStalling",
        "ringrift_coordinator_stalls_total",
        {"v1": "0 1 2 4 4 4", "v2": "0 0 1 1 1 1"},
        quiet_at="5m",
        fires_at="15m",
        summary="The coordinator on v1 keeps stalling for seconds (no Python code ran)",
    )


def fires_for_one_node(
    tmp_path: Path,
    alert: str,
    counter: str,
    values: dict[str, str],
    *,
    quiet_at: str,
    fires_at: str,
    summary: str,
) -> None:
    """promtool's rule unit test of ``alert`` over ``counter`` sampled every 5 min per
    node (``values``): quiet at ``quiet_at``, firing for v1 alone at ``fires_at``."""
    promtool = need_command("promtool")
    case = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "5m",
                "input_series": [
                    {"series": f'{counter}{{node="{node}"}}', "values": v}
                    for node, v in values.items()
                ],
                "alert_rule_test": [
                    {"eval_time": quiet_at, "alertname": alert, "exp_alerts": []},
                    {
                        "eval_time": fires_at,
                        "alertname": alert,
                        "exp_alerts": [
                            {
                                "exp_labels": {"node": "v1", "severity": "warning"},
                                "exp_annotations": {
                                    "summary": summary,
                                    "runbook": f"docs/operations.md#{alert.lower()}",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "alerts.yml").write_text(RULES.read_text())
    (tmp_path / "test.yml").write_text(yaml.safe_dump(case))
    out = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_generated_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = need_command("promtool")
    inv = tmp_path / "distributed_hosts.yaml"
    inv.write_text(INVENTORY)
    out_file = tmp_path / "prom" / "prometheus.yml"
    out_file.parent.mkdir()
    cmd = [PYTHON, "-m", "ringrift_fleet", "inventory", "prometheus", str(inv), "-o", str(out_file)]
    gen = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert gen.returncode == 0, gen.stderr
    doc = yaml.safe_load(out_file.read_text())
    coord = doc["scrape_configs"][0]["static_configs"]
    assert [c["labels"]["host"] for c in coord] == ["gpu-1", "gpu-2", "broker-1"]  # not retired
    assert coord[1]["targets"] == ["10.0.0.2:8771"]
    assert doc["scrape_configs"][1]["static_configs"][0]["targets"] == ["10.0.0.3:5555"]
    check = subprocess.run(
        [promtool, "check", "config", str(out_file)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 rule files found" in check.stdout
    # a bad inventory is one line naming the file, not a traceback
    bad = subprocess.run(
        [*cmd[:5], str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr and "Traceback" not in bad.stderr


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=3) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def query(port: int, expr: str) -> list[dict[str, Any]]:
    try:
        return list(api(port, "query", query=expr)["result"])
    except OSError:
        return []


def firing(port: int, name: str) -> bool:
    try:
        alerts = api(port, "alerts")["alerts"]
    except OSError:
        return False
    return any(a["labels"]["alertname"] == name and a["state"] == "firing" for a in alerts)


def fast_rules(path: Path) -> None:
    """The shipped rules with every ``for:`` cut to 2 s, so a test sees one fire quickly."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "2s"
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    swim = {"RINGRIFT_SWIM_ENABLED": "true", "RINGRIFT_MEMBERSHIP_MODE": "swim"}
    f = LocalFleet(tmp_path / "fleet", voters=1, non_voters=1, extra_env=swim)
    try:
        f.start_all()
        yield f
    finally:
        f.stop_all()


@pytest.mark.timeout(120)
def test_prometheus_scrapes_two_coordinators_and_fires_no_leader(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    prometheus = need_command("prometheus")
    leader = fleet.wait_leader(20)
    assert leader == "n0", fleet.log("n0")
    assert wait_for(lambda: set(fleet.leaders()) == {"n0"} and fleet.status("n1") is not None, 10)
    assert leader, fleet.log("n0")
    port = free_port()
    conf = tmp_path / "prom"
    conf.mkdir()
    fast_rules(conf / "alerts.yml")
    targets = [
        {"targets": [f"127.0.0.1:{c.status_port}"], "labels": {"host": c.name}}
        for c in fleet.nodes.values()
    ]
    (conf / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["alerts.yml"],
                "scrape_configs": [{"job_name": "ringrift-coordinator", "static_configs": targets}],
            }
        )
    )
    argv = [
        prometheus,
        f"--config.file={conf / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = spawn(argv, log=tmp_path / "prometheus.log")
    try:
        started = time.monotonic()
        up = 'up{job="ringrift-coordinator"} == 1'
        assert wait_for(lambda: len(query(port, up)) == 2, 40, 0.25), api(port, "targets")
        leaders = query(port, "ringrift_is_leader == 1")
        assert [r["metric"]["node"] for r in leaders] == [leader]
        assert len(query(port, "ringrift_term")) == 2
        assert len(query(port, 'ringrift_work_items{state="pending"}')) == 2
        assert len(query(port, "ringrift_raft_commit_index")) == 1  # the voter only
        # each node's view of each member (the target's own label is `host`)
        assert wait_for(lambda: len(query(port, "ringrift_member_alive == 1")) == 4, 10, 0.25)
        views = {
            (r["metric"]["node"], r["metric"]["member"])
            for r in query(port, "ringrift_member_alive == 1")
        }
        assert views == {("n0", "n0"), ("n0", "n1"), ("n1", "n0"), ("n1", "n1")}
        # SWIM at work on both nodes, and the ledger's write latency on the leader
        probing = "ringrift_swim_probes_total > 0"
        assert wait_for(lambda: len(query(port, probing)) == 2, 15, 0.25), query(port, probing)
        assert len(query(port, "ringrift_swim_refutations_total")) == 2
        writes = query(port, "sum by (node) (ringrift_ledger_op_duration_seconds_count)")
        assert [r["metric"]["node"] for r in writes] == [leader]
        p99 = "histogram_quantile(0.99, sum by (le) (ringrift_ledger_op_duration_seconds_bucket))"
        assert 0 < float(query(port, p99)[0]["value"][1]) <= 5.0
        # before the first scrapes there is no leader to see: once one is scraped, no alert
        assert wait_for(lambda: not firing(port, "RingriftNoLeader"), 15, 0.25)

        fleet.kill(leader, signal.SIGKILL)  # the only voter: the non-voter cannot lead
        killed = time.monotonic()
        assert wait_for(lambda: firing(port, "RingriftNoLeader"), 40, 0.25), api(port, "alerts")
        print(
            f"prometheus up in {killed - started:.1f}s; "
            f"RingriftNoLeader firing {time.monotonic() - killed:.1f}s after the kill"
        )
        assert wait_for(lambda: firing(port, "RingriftCoordinatorDown"), 20, 0.25)
        # the survivor's own view of the dead leader, as its members by state say
        gone = 'ringrift_members{node="n1",state=~"suspect|dead"} > 0'
        assert wait_for(lambda: len(query(port, gone)) == 1, 20, 0.25), query(
            port, "ringrift_members"
        )
        assert wait_for(lambda: firing(port, "RingriftHostDead"), 20, 0.25), api(port, "alerts")
        dead = [
            a["labels"]["member"]
            for a in api(port, "alerts")["alerts"]
            if a["labels"]["alertname"] == "RingriftHostDead" and a["state"] == "firing"
        ]
        assert dead == ["n0"]
    finally:
        stop(proc)
