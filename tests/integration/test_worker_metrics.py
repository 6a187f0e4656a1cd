"""A real Celery worker pushes its report; its host's coordinator collector exports it.

One `ringrift-fleet worker` (CPU, one process) on a real redis-server runs a
3-second command job; the collector of its host (the same FleetCollector a
coordinator registers, reading the real broker) shows the job running, the
host's worker busy fraction at 1, and then the task finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ringrift_fleet.execution.dispatch import job_outcome, send_job
from ringrift_fleet.execution.worker_report import key_for
from ringrift_fleet.metrics import FleetCollector
from tests.support.celery_worker import one_worker_fleet
from tests.support.procs import PYTHON, REPO, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NODE = "wm-host"
SCRIPT = REPO / "tests" / "support" / "sleepy_job.py"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("worker-metrics")
    workloads = root / "workloads.yaml"
    workloads.write_text(
        "selfplay:\n"
        f"  command: [{PYTHON}, {SCRIPT}, --seconds, '3', --out, '{{output_dir}}',"
        f" --record, '{root / 'runs.txt'}', --job, '{{job_id}}', --attempt, '{{attempt}}']\n"
    )
    with one_worker_fleet(root, NODE, RINGRIFT_P2P_WORKLOADS_FILE=str(workloads)) as f:
        yield f


def scrape(fleet: dict[str, Any]) -> str:
    status = {"node_id": NODE, "role": "leader", "scheduler": {}}  # a coordinator with a broker
    server = SimpleNamespace(status=status, snapshot_age=lambda: 0.0)
    node = SimpleNamespace(
        node_id=NODE, status_server=server, ledger=None, config=fleet["cfg"], inventory=None
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(node, probe_host=lambda: {}))  # a fresh probe each time
    return generate_latest(registry).decode()


def test_the_workers_report_reaches_its_hosts_metrics(fleet: dict[str, Any]) -> None:
    worker = f"{NODE}@cpu"
    r = fleet["redis"]
    assert wait_for(lambda: r.hget(key_for(NODE), worker) is not None, 15, 0.2)
    idle = scrape(fleet)
    assert f'ringrift_worker_up{{node="{NODE}",worker="{worker}"}} 1.0' in idle
    assert f'ringrift_worker_tasks_running{{node="{NODE}",worker="{worker}"}} 0.0' in idle
    assert f'ringrift_host_worker_busy_ratio{{node="{NODE}"}} 0.0' in idle

    kwargs = {"board_type": "hex8", "num_players": 2, "num_games": 1}
    task_id = send_job("selfplay", kwargs, queue="any", job_id="wm-1", app=fleet["app"])
    busy = f'ringrift_host_worker_busy_ratio{{node="{NODE}"}} 1.0'
    assert wait_for(lambda: busy in scrape(fleet), 12, 0.5), scrape(fleet)
    result = fleet["app"].AsyncResult(task_id)
    assert wait_for(lambda: job_outcome(result) is not None, 30, 0.2)
    assert (job_outcome(result) or {}).get("status") == "completed", job_outcome(result)
    assert (job_outcome(result) or {}).get("run_seconds", 0) >= 3  # measured by the worker
    done = (
        f'ringrift_worker_tasks_total{{node="{NODE}",task="ringrift.selfplay",worker="{worker}"}}'
        " 1.0"
    )
    assert wait_for(lambda: done in scrape(fleet), 12, 0.5), scrape(fleet)
    idle_again = f'ringrift_host_worker_busy_ratio{{node="{NODE}"}} 0.0'
    assert wait_for(lambda: idle_again in scrape(fleet), 5, 0.5), scrape(fleet)
    busy_s = [
        float(line.rsplit(" ", 1)[1])
        for line in scrape(fleet).splitlines()
        if line.startswith("ringrift_worker_busy_seconds_total{")
    ]
    assert busy_s and 2.5 <= busy_s[0] <= 10, busy_s  # the 3-second job, sampled every 0.5 s


def test_a_worker_that_stops_takes_its_report_away(fleet: dict[str, Any]) -> None:
    from tests.support.procs import stop

    stop(fleet["worker"].proc, timeout=15)
    assert wait_for(lambda: fleet["redis"].hget(key_for(NODE), f"{NODE}@cpu") is None, 10, 0.2)
    assert "ringrift_worker_up" not in scrape(fleet)
