"""The monitoring role's Grafana dashboard is valid JSON whose queries parse and name only metrics
the coordinators export; the alert rules name only exported metrics too."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from ringrift_fleet.histograms import LEDGER_OP_BUCKETS
from ringrift_fleet.metrics import (
    DURATION_BUCKETS,
    Probes,
    SchedulerCounts,
    families,
    scheduler_families,
)
from tests.support.prereq import need_command
from tests.unit.test_metrics import STATUS

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "ansible" / "roles" / "monitoring" / "files" / "grafana-dashboard.json"
RULES = REPO / "ringrift_fleet" / "alerts.yaml"
NAME = re.compile(r"\bringrift_[a-z0-9_]+")


def exported() -> set[str]:
    """Every series name a fully-populated coordinator exports."""
    probes = Probes(
        jobs={("selfplay", "running"): 1},
        replaced={("selfplay", "host_death"): 1},
        host={
            "cpu_percent": 1.0,
            "memory_percent": 1.0,
            "disk_percent": 1.0,
            "gpu_utilization_percent": 1.0,
            "gpu_memory_percent": 1.0,
            "has_gpu": True,
            "load_score": 0.5,
            "load1": 1.0,
        },
        disk_critical_ratio=0.7,
        broker_up=True,
        queues={"cpu": 1},
        webhooks={"sent": 1},
        workers={"n1@gpu0": {"up": True, "running": 1, "concurrency": 1, "processed": {"t": 1}}},
        ledger_ops={("add_work.v1", "ok"): ([1] * (len(LEDGER_OP_BUCKETS) + 1), 0.01)},
    )
    counts = SchedulerCounts(
        durations={"selfplay": ([1] * (len(DURATION_BUCKETS) + 1), 1.0)},
        replacements={("selfplay", "host_death"): 1},
        fence_refusals={"send_slot": 1},
    )
    names: set[str] = set()
    for fam in [*families("n1", STATUS, probes), *scheduler_families("n1", counts)]:
        names.update(s.name for s in fam.samples)
    return names


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_dashboard_is_grafana_json_with_the_three_views() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "ringrift-fleet" and doc["panels"]
    rows = [p["title"] for p in doc["panels"] if p["type"] == "row"]
    assert rows == ["Fleet overview", "Per host", "Per board config: the learning curve"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "host", "config"}
    for p in doc["panels"]:
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]


def test_dashboard_and_alerts_name_only_exported_metrics() -> None:
    have = exported()
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for expr in [*dashboard_exprs(), *rules]:
        for name in NAME.findall(expr):
            assert name in have, f"{name} (in {expr!r}) is not exported by ringrift_fleet.metrics"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    promtool = need_command("promtool")
    exprs = [e.replace("$host", ".*").replace("$config", ".*") for e in dashboard_exprs()]
    doc = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"panel:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(doc))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_docs_operations_describes_every_exported_metric() -> None:
    ops = (REPO / "docs" / "operations.md").read_text()
    names = {re.sub(r"_(bucket|count|sum)$", "", n) for n in exported()}
    missing = sorted(n for n in names if f"`{n}`" not in ops)
    assert not missing, f"docs/operations.md (### Metrics) does not describe {missing}"


def test_docs_operations_lists_every_alert_with_its_severity() -> None:
    ops = (REPO / "docs" / "operations.md").read_text()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            rows = [line for line in ops.splitlines() if line.startswith(f"| {rule['alert']} |")]
            assert len(rows) == 1, f"docs/operations.md: no table row for {rule['alert']}"
            assert f"| {rule['labels']['severity']} |" in rows[0], rows[0]
