"""ringrift_fleet.fleet_page: the page's JSON from a status snapshot (pure), the Elo tracker."""

from __future__ import annotations

import json
from importlib import resources
from types import SimpleNamespace

from ringrift_fleet.fleet_page import CSP, EloHistory, running_jobs, summary
from tests.unit.test_metrics import STATUS


def test_elo_history_adds_a_point_per_new_champion_only() -> None:
    h = EloHistory()
    st = {"promotions": 0, "champion_elo": 1500.0, "champion": None}
    h.observe({"sq8": st}, {"sq8": 10}, 0.0)
    h.observe({"sq8": st}, {"sq8": 20}, 30.0)  # same champion: no new point
    h.observe(
        {"sq8": {**st, "promotions": 1, "champion_elo": 1560.0, "champion": "m1"}},
        {"sq8": 40},
        60.0,
    )
    assert [(p["version"], p["elo"], p["model"]) for p in h.points["sq8"]] == [
        (0, 1500.0, None),
        (1, 1560.0, "m1"),
    ]
    assert h.games_per_hour("sq8") == 1800.0  # 30 games in 60 s
    assert h.games_per_hour("other") is None
    h.observe({"bad": {"champion_elo": "x"}, "worse": None}, {"sq8": "x"}, 61.0)  # ignored
    assert set(h.points) == {"sq8"}


def test_summary_shows_leader_hosts_queues_events_and_curves() -> None:
    inv = SimpleNamespace(
        hosts=[
            SimpleNamespace(name="n1", gpu="H100", gpu_count=2, tier="t1", status="ready"),
            SimpleNamespace(name="n4", gpu="CPU", gpu_count=0, tier="cpu", status="offline"),
        ]
    )
    status = dict(STATUS, voters=["n1"], snapshot_at=5.0)
    status["scheduler"] = dict(
        STATUS["scheduler"],
        events=[
            {"at": 2.0, "text": "square8_2p: training on n1"},
            {"at": 3.0, "text": "host n3 dead: 2 job(s) re-enqueued"},
        ],
    )
    history = EloHistory()
    history.observe(status["scheduler"]["configs"], status["scheduler"]["games"], 1.0)
    doc = summary(
        status,
        inventory=inv,
        jobs=running_jobs(
            [
                {"claimed_by": "n1", "status": "running", "work_type": "selfplay"},
                {"claimed_by": "n1", "status": "completed", "work_type": "selfplay"},
            ]
        ),
        figures={
            "n1": {
                "cpu_percent": 40.0,
                "disk_percent": 50.0,
                "gpu_utilization_percent": 90.0,
                "has_gpu": True,
            }
        },
        queues={"selfplay.t1": 3, "cpu": 0, "training.t3": 2},
        history=history,
    )
    json.dumps(doc)  # JSON-able
    assert doc["leader"] == "n1" and doc["term"] == 7
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert set(hosts) == {"n1", "n2", "n3", "n4"}
    assert hosts["n1"]["leader"] and hosts["n1"]["voter"] and hosts["n1"]["gpus"] == 2
    assert hosts["n1"]["jobs"] == {"selfplay": 1} and hosts["n1"]["gpu_busy"] == 90.0
    assert hosts["n3"]["state"] == "dead" and hosts["n4"]["state"] == "unknown"
    assert [q["queue"] for q in doc["queues"]] == [
        "selfplay.t1",
        "training.t3",
    ]  # empty ones hidden
    assert [q["no_consumer"] for q in doc["queues"]] == [False, True]
    assert doc["events"][0]["text"] == "host n3 dead: 2 job(s) re-enqueued"  # newest first
    (cfg,) = doc["configs"]
    assert cfg["config"] == "square8_2p" and cfg["elo"] == 1620.5
    assert cfg["elo_history"] == [{"version": 2, "elo": 1620.5, "model": None, "at": 1.0}]
    # nothing secret goes out
    text = json.dumps(doc)
    assert "fence" not in text and "10.0." not in text


def test_summary_of_a_broken_snapshot_is_still_a_page() -> None:
    doc = summary({"error": "snapshot failed"})
    assert doc["hosts"] == [] and doc["configs"] == [] and doc["leader"] is None


def test_the_page_is_self_contained_and_read_only() -> None:
    html = resources.files("ringrift_fleet").joinpath("fleet_page.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    assert "<form" not in html and "method:" not in html and "POST" not in html
    assert 'fetch("fleet.json"' in html
    assert "connect-src 'self'" in CSP and "default-src 'none'" in CSP
