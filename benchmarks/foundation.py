"""Foundation benchmark: the pure decisions' cost, inventory loading, probes, webhook enqueue.

Prints ONE JSON line.  What it measures and why:

* gpu_normalize_us: one NVML name → ranking key (runs per heartbeat per peer).
* should_trigger_us / rank_50_nodes_us: the training decision and a 50-node
  ranking, run by the scheduler every tick.
* inventory_load_50_ms: validate a 50-host distributed_hosts.yaml (every
  coordinator start); ansible_generate_ms: inventory.example through the real
  ansible-inventory (an operator command, dominated by Ansible's start-up).
* probe_ms: psutil/NVML probe of this host (every heartbeat).
* webhook_enqueue_*_us: how long send_webhook_notification holds its caller
  while the destination hangs (the guarantee: never blocked by the network);
  webhook_delivered_per_s: sequential delivery to a local 200 OK server.

Usage: python benchmarks/foundation.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ringrift_fleet import inventory  # noqa: E402
from ringrift_fleet.config import P2PConfig  # noqa: E402
from ringrift_fleet.models import NodeSummary, ResourceMetrics  # noqa: E402
from ringrift_fleet.notifications import Notifier, WebhookConfig, send_webhook_notification  # noqa: E402
from ringrift_fleet.placement import normalize_gpu_name  # noqa: E402
from ringrift_fleet.resources import probe_resources  # noqa: E402
from ringrift_fleet.training import rank_nodes_for_training, should_trigger_training  # noqa: E402
from tests.support.webhook_server import recording_server  # noqa: E402

NVML_NAMES = [
    "NVIDIA GH200 480GB",
    "NVIDIA H100 80GB HBM3",
    "NVIDIA H100 PCIe",
    "NVIDIA GeForce RTX 4090",
    "NVIDIA RTX A6000",
    "NVIDIA A40",
    "Tesla V100-SXM2-32GB",
    "NVIDIA RTX 6000 Ada Generation",
]


def per_call_us(fn: Any, calls: int) -> float:
    """Median over 5 rounds of the mean time per call, µs."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return round(statistics.median(rounds), 2)


def fleet_yaml(n: int) -> str:
    gpus = ["GH200", "H100", "A100", "RTX_4090", "RTX_5090", "L40S"]
    hosts = {
        f"host-{i:02d}": {
            "tailscale_ip": f"100.64.1.{i + 1}",
            "ssh_host": f"192.0.2.{i + 1}",
            "gpu": gpus[i % len(gpus)],
            "gpu_count": 1 + i % 8,
            "memory_gb": 256,
            "cpus": 32,
        }
        for i in range(n)
    }
    import yaml

    return yaml.safe_dump({"hosts": hosts, "raft_voters": ["host-00", "host-01", "host-02"]})


def nodes(n: int) -> list[NodeSummary]:
    gpus = [("GH200", 96), ("H100", 80), ("A100", 80), ("RTX_4090", 24), ("A10", 24), ("CPU", 0)]
    out = []
    for i in range(n):
        gpu, vram = gpus[i % len(gpus)]
        out.append(
            NodeSummary(
                node_id=f"n{i}",
                gpu_type=gpu,
                gpu_count=0 if gpu == "CPU" else 1,
                gpu_vram_gb=vram,
                metrics=ResourceMetrics(
                    cpu_percent=(i * 7) % 100, memory_percent=30, disk_percent=40
                ),
            )
        )
    return out


def timed_ms(fn: Any, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(samples), 2)


def webhook_figures(calls: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with recording_server(script=[None] * 4) as hung:
        notifier = Notifier(queue_size=calls + 10)
        config = WebhookConfig(url=hung.url(), timeout=2.0, max_retries=0, rate_limit=calls + 10)
        latencies = []
        for i in range(calls):
            start = time.perf_counter()
            queued = send_webhook_notification(config, event=f"e{i}", notifier=notifier)
            latencies.append((time.perf_counter() - start) * 1e6)
            assert queued
        latencies.sort()
        out["webhook_enqueue_p50_us"] = round(latencies[len(latencies) // 2], 1)
        out["webhook_enqueue_p99_us"] = round(latencies[int(len(latencies) * 0.99) - 1], 1)
        out["webhook_enqueue_max_us"] = round(latencies[-1], 1)
        hung.release.set()
    with recording_server() as ok:
        notifier = Notifier(queue_size=calls + 10)
        config = WebhookConfig(url=ok.url(), rate_limit=calls + 10)
        start = time.perf_counter()
        for i in range(calls):
            send_webhook_notification(config, event=f"e{i}", notifier=notifier)
        assert notifier.flush(120)
        elapsed = time.perf_counter() - start
        assert len(ok.requests) == calls
        out["webhook_delivered_per_s"] = round(calls / elapsed, 1)
    return out


def main() -> None:
    # the hung-server phase leaves failures behind by design; keep stdout/stderr to the result
    logging.getLogger("ringrift_fleet").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    cfg = P2PConfig(NODE_ID="bench")
    names = iter(NVML_NAMES * 100_000)
    text = fleet_yaml(50)
    fifty = nodes(50)
    results: dict[str, Any] = {
        "benchmark": "foundation",
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
        "gpu_normalize_us": per_call_us(lambda: normalize_gpu_name(next(names)), 20_000 // scale),
        "should_trigger_us": per_call_us(
            lambda: should_trigger_training(games_available=6000, hours_since_last_training=12.0),
            20_000 // scale,
        ),
        "rank_50_nodes_us": per_call_us(lambda: rank_nodes_for_training(fifty, cfg), 500 // scale),
        "inventory_load_50_ms": timed_ms(
            lambda: inventory.loads(text, warn=False), 20 // scale or 1
        ),
        "ansible_generate_ms": timed_ms(
            lambda: inventory.from_ansible(REPO / "inventory.example", warn=False),
            3 if not args.quick else 1,
        ),
        "probe_ms": timed_ms(lambda: probe_resources("/"), 20 // scale or 1),
    }
    results.update(webhook_figures(500 // scale))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
