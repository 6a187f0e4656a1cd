"""A real leading coordinator sends Celery tasks without loading the workloads.

The coordinator runs on every GPU host beside the jobs, so what it imports is
memory the jobs do not get.  ``-X importtime`` (PYTHONPROFILEIMPORTTIME) makes
the process itself list every module it imported, over its whole run.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis
import yaml

from tests.support.coordinators import get_json
from tests.support.imports import imported, one_host_inventory
from tests.support.procs import PYTHON, free_port, spawn, stop, wait_for
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def queued_messages(client: redis.Redis) -> int:
    """Messages waiting in the broker's lists (kombu's Redis queues)."""
    keys = client.keys("*")
    return sum(int(client.llen(k)) for k in keys if client.type(k) == b"list")


@pytest.mark.timeout(90)
def test_leading_coordinator_sends_jobs_without_numpy(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    status_port = free_port()
    hosts_file = tmp_path / "distributed_hosts.yaml"
    hosts_file.write_text(yaml.safe_dump(one_host_inventory("h0", status_port)))
    env = {
        "RINGRIFT_P2P_STATE_DIR": str(tmp_path / "state"),
        "RINGRIFT_P2P_BIND_HOST": "127.0.0.1",
        "RINGRIFT_BROKER_URL": redis_server.url,
        "RINGRIFT_P2P_SCHEDULER_TICK": "0.2",
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    log = tmp_path / "coordinator.log"
    argv = [PYTHON, "-m", "ringrift_fleet", "coordinator", "--node", "h0"]
    proc = spawn([*argv, "--hosts-file", str(hosts_file)], env=env, log=log)
    client = redis.Redis.from_url(redis_server.url)
    try:
        url = f"http://127.0.0.1:{status_port}/status"
        assert wait_for(lambda: get_json(url).get("role") == "leader", 30), log.read_text()[-3000:]
        # The leader feeds the idle GPU: self-play tasks reach the broker.
        assert wait_for(lambda: queued_messages(client) > 0, 30), log.read_text()[-3000:]
        assert proc.poll() is None
    finally:
        stop(proc, sig=signal.SIGTERM)
        client.close()
    mods = imported(log.read_text(errors="replace"))
    assert "celery" in mods and "ringrift_fleet.execution.dispatch" in mods  # it did send
    for heavy in ("numpy", "matplotlib", "ringrift_fleet.execution.tasks"):
        assert heavy not in mods, f"the coordinator imported {heavy}"
    assert not any(m.startswith("ringrift_fleet.execution.workloads") for m in mods)
