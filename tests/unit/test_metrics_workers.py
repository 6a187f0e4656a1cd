"""Workers' reports (execution/worker_report.py) -> the host coordinator's worker series."""

from __future__ import annotations

import json

from ringrift_fleet.execution.worker_report import (
    FORGET_AFTER_S,
    STALE_AFTER_S,
    make_report,
    parse_reports,
)
from ringrift_fleet.metrics import Probes
from tests.unit.test_metrics import STATUS, samples, value

NOW = 1_000_000.0


def raw(**reports: dict) -> dict[bytes, bytes]:
    return {k.encode(): json.dumps(v).encode() for k, v in reports.items()}


def test_reports_up_stale_forgotten_and_malformed() -> None:
    fresh = make_report("n1@gpu0", 1, 1, {"ringrift.selfplay": 3}, NOW - 2)
    stale = make_report("n1@gpu1", 1, 0, {}, NOW - STALE_AFTER_S - 1)
    gone = make_report("n1@gpu2", 1, 0, {}, NOW - FORGET_AFTER_S - 1)
    hash_ = raw(**{"n1@gpu0": fresh, "n1@gpu1": stale, "n1@gpu2": gone})
    hash_[b"n1@gpu3"] = b"{not json"
    reports, forget = parse_reports(hash_, NOW)
    assert reports["n1@gpu0"] == {
        "up": True,
        "running": 1,
        "concurrency": 1,
        "busy_seconds": 0.0,
        "processed": {"ringrift.selfplay": 3},
    }
    assert reports["n1@gpu1"]["up"] is False
    assert sorted(forget) == ["n1@gpu2", "n1@gpu3"]


def test_worker_series_and_the_hosts_busy_fraction() -> None:
    workers = {
        "n1@gpu0": {"up": True, "running": 1, "concurrency": 1, "processed": {"ringrift.sync": 2}},
        "n1@gpu1": {"up": True, "running": 0, "concurrency": 1, "processed": {}},
        "n1@gpu2": {"up": False, "running": 1, "concurrency": 1, "processed": {}},
    }
    got = samples(STATUS, Probes(workers=workers))
    assert value(got, "ringrift_worker_up", worker="n1@gpu0") == 1
    assert value(got, "ringrift_worker_up", worker="n1@gpu2") == 0  # down: not counted below
    assert value(got, "ringrift_worker_tasks_running", worker="n1@gpu0") == 1
    assert value(got, "ringrift_worker_tasks_total", worker="n1@gpu0", task="ringrift.sync") == 2
    assert value(got, "ringrift_host_worker_busy_ratio") == 0.5


def test_no_reports_no_worker_series() -> None:
    got = samples(STATUS, Probes())
    assert not [k for k in got if k[0].startswith(("ringrift_worker", "ringrift_host_worker"))]
