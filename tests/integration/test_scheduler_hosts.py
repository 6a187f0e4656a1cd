"""Host figures reach the leader through Redis, and the health gate acts on them."""

from __future__ import annotations

import pytest
import redis

from ringrift_fleet.config import load_config
from ringrift_fleet.inventory import loads
from ringrift_fleet.models import ResourceMetrics
from ringrift_fleet.scheduler.hosts import METRICS_PREFIX, FleetHosts, MetricsBoard
from ringrift_fleet.scheduler.policy import plan, unhealthy_reason
from ringrift_fleet.scheduler.settings import SchedulerPolicy
from ringrift_fleet.scheduler.snapshot import Snapshot
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

INVENTORY = """
hosts:
  gpu-1:
    address: 10.0.0.1
    gpu: H100
    gpu_count: 4
    gpu_vram_gb: 80
  cpu-1:
    address: 10.0.0.2
    cpus: 16
    status: offline
"""


@pytest.mark.timeout(60)
def test_posted_metrics_gate_new_work(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    board = MetricsBoard(client)
    cfg = load_config({})
    inv = loads(INVENTORY, "distributed_hosts.yaml")
    hosts = FleetHosts("gpu-1", cfg, inv, None, board)

    (h,) = hosts()  # membership off: only this host is known alive
    assert (h.node_id, h.gpu_type, h.slots, h.can_train) == ("gpu-1", "H100", 4, True)
    assert hosts.address("gpu-1") == "http://10.0.0.1:8770"

    board.publish("gpu-1", ResourceMetrics(disk_percent=93.0, cpu_percent=20.0))
    (h,) = hosts()
    assert h.metrics.disk_percent == 93.0
    policy = SchedulerPolicy.from_config(cfg)
    assert "disk" in (unhealthy_reason(h, policy) or "")
    assert plan(Snapshot(now=0.0, hosts=(h,), policy=policy)) == []

    board.publish("gpu-1", ResourceMetrics(disk_percent=40.0))
    (h,) = hosts()
    assert unhealthy_reason(h, policy) is None
    assert plan(Snapshot(now=0.0, hosts=(h,), policy=policy))

    # a malformed post changes nothing but its own host's figures
    client.set(METRICS_PREFIX + "gpu-1", b"{not json")
    (h,) = hosts()
    assert h.metrics == ResourceMetrics(has_gpu=True)
    # posts expire: a host that stops reporting loses its figures
    board.publish("gpu-1", ResourceMetrics())
    assert 0 < client.ttl(METRICS_PREFIX + "gpu-1") <= 30
