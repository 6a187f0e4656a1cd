"""HybridCoordinator's SWIM view: /status says what runs, and SWIM recovers in pure
SWIM mode too, at most once per 5 minutes, emitting SWIM_RECOVERED (issue 11)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringrift_fleet.config import FeatureFlags, load_config
from ringrift_fleet.consensus.voters import load_inventory
from ringrift_fleet.hybrid_coordinator import HybridCoordinator
from ringrift_fleet.membership import SWIM_RECOVERED
from tests.support.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make(tmp_path: Path, mode: str, swim_port: int) -> HybridCoordinator:
    """A lone voter "a" on loopback, membership ``mode``, Bully consensus."""
    doc = {
        "hosts": {
            "a": {
                "address": "127.0.0.1",
                "swim_port": swim_port,
                "status_port": free_port(),
                "raft_port": free_port(),
            }
        },
        "raft_voters": ["a"],
    }
    path = tmp_path / "distributed_hosts.yaml"
    path.write_text(yaml.safe_dump(doc))
    config = load_config(
        {
            "RINGRIFT_P2P_STATE_DIR": str(tmp_path / "state"),
            "RINGRIFT_P2P_HOSTS_FILE": str(path),
            "RINGRIFT_CLUSTER_KEY": "k",
        }
    )
    flags = FeatureFlags(swim_enabled=True, membership_mode=mode)
    return HybridCoordinator(
        node_id="a", config=config, inventory=load_inventory(str(path)), flags=flags
    )


def test_swim_mode_with_an_agent_reports_swim(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        c = make(tmp_path, "swim", free_udp_port())
        await c.start()
        try:
            assert c.is_leader()
            status = c.get_status()
            assert (
                status["swim"]["alive_count"]
                == c.membership.get_membership_summary()["alive_count"]
            )
            assert c.get_swim_health()["running"] is True
            return status
        finally:
            await c.stop()

    status = asyncio.run(main())
    assert status["membership_mode"] == "swim" and "membership_mode_configured" not in status
    assert status["swim"]["started"] is True
    assert status["swim"]["alive_count"] == 1  # counts this node itself


def test_hybrid_mode_whose_swim_port_is_taken_says_http_answers(tmp_path: Path) -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    try:

        async def main() -> dict[str, Any]:
            c = make(tmp_path, "hybrid", blocker.getsockname()[1])
            await c.start()
            try:
                return c.get_status()
            finally:
                await c.stop()

        status = asyncio.run(main())
    finally:
        blocker.close()
    assert status["swim"]["started"] is False, status
    assert status["membership_mode"] == "http"
    assert status["membership_mode_configured"] == "hybrid"
    assert status["http"]["enabled"] is True


def test_pure_swim_recovers_once_per_five_minutes_and_says_so(tmp_path: Path) -> None:
    async def main() -> None:
        c = make(tmp_path, "swim", free_udp_port())
        c.swim_recover_every = 0.1  # check often; the 5-minute limit is the manager's
        events: list[Any] = []
        await c.start()
        try:
            c.membership.add_listener(events.append)
            swim = c.membership
            assert swim.started
            await swim.stop(leave=False)  # the socket dies under a running coordinator
            assert c.get_status()["swim"]["started"] is False
            for _ in range(100):  # bounded: the next check restarts it
                if swim.started:
                    break
                await asyncio.sleep(0.05)
            assert swim.started, c.get_swim_health()
            assert [e.kind for e in events if e.kind == SWIM_RECOVERED] == [SWIM_RECOVERED]
            health = c.get_swim_health()
            assert health["recoveries"] == 1 and len(health["coordinator_recoveries"]) == 1
            assert c.get_status()["swim"]["started"] is True
            # a second failure within 5 minutes is not restarted (rate limit)
            await swim.stop(leave=False)
            await asyncio.sleep(1.0)  # ten checks
            assert not swim.started
            assert c.get_swim_health()["recoveries"] == 1
        finally:
            await c.stop()

    asyncio.run(main())


def test_without_swim_get_swim_health_says_why(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        c = make(tmp_path, "http", free_udp_port())
        await c.start()
        try:
            return c.get_swim_health()
        finally:
            await c.stop()

    health = asyncio.run(main())
    assert health["running"] is False and "membership mode http" in health["problems"][0]
