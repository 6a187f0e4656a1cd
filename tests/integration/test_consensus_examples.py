"""The README's consensus examples run as written (with ringrift_fleet for app.p2p)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest

from ringrift_fleet.config import reload_feature_flags, reload_p2p_config
from tests.support.procs import free_port
from tests.unit.test_seed_examples import EXAMPLES, example_code

pytestmark = pytest.mark.integration


@pytest.fixture
def laptop(fresh_config: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No inventory, state in a temp dir: the README's one-machine setting."""
    fresh_config.setenv("RINGRIFT_P2P_STATE_DIR", str(tmp_path / "state"))
    fresh_config.setenv("RINGRIFT_P2P_HOSTS_FILE", "")  # empty: no inventory, on purpose
    reload_p2p_config()
    reload_feature_flags()
    return fresh_config


@pytest.mark.timeout(60)
def test_replicated_work_queue_example(laptop: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ringrift_fleet.raft_state import create_replicated_work_queue

    queue = create_replicated_work_queue(node_id="my-node")
    try:
        queue.add_work("job-1", {"work_type": "selfplay", "board_type": "hex8"})
        success = queue.claim_work("job-1", "my-node")
        stats = queue.get_queue_stats()
        assert success is True
        assert stats["pending"] == 0 and stats["running"] == 0 and stats["claimed"] == 1
        assert stats["is_leader"] is True and stats["leader"] == "my-node"
        assert queue.claim_work("job-1", "other-node") is False
        assert queue.get("job-1").payload["board_type"] == "hex8"  # type: ignore[union-attr]
        assert (tmp_path / "state" / "raft" / "my-node.journal").exists()
    finally:
        queue.close()
    # the journal brings the queue back on the next start
    again = create_replicated_work_queue(node_id="my-node")
    try:
        assert again.get("job-1").claimed_by == "my-node"  # type: ignore[union-attr]
    finally:
        again.close()


@pytest.mark.timeout(60)
def test_job_assignments_example(laptop: pytest.MonkeyPatch) -> None:
    from ringrift_fleet.raft_state import ReplicatedJobAssignments, create_replicated_work_queue

    queue = create_replicated_work_queue(node_id="my-node")
    try:
        assignments = ReplicatedJobAssignments(queue)
        first = assignments.assign("train-1", "gpu-1", "training")
        assert first is not None and first.attempt == 1
        assert [a.job_id for a in assignments.jobs_of("gpu-1")] == ["train-1"]
        assert assignments.reassign_jobs_of("gpu-1") == ["train-1"]
        second = assignments.assign("train-1", "gpu-2", "training")
        assert second is not None and second.attempt == 2
        assert not assignments.accept_result("train-1", first.fence_token, {"loss": 1.0})
        assert assignments.accept_result("train-1", second.fence_token, {"loss": 0.5})
    finally:
        queue.close()


@pytest.mark.timeout(60)
def test_hybrid_coordinator_example(laptop: pytest.MonkeyPatch) -> None:
    from ringrift_fleet.hybrid_coordinator import HybridCoordinator

    async def main() -> None:
        coordinator = HybridCoordinator(orchestrator=None, node_id="my-node")
        await coordinator.start()
        try:
            # the seed's example asks straight after start(): a lone voter already leads
            assert coordinator.is_leader(), "a fleet of one must lead itself when start() returns"
            peers = coordinator.get_alive_peers()
            assert peers == []
            assert coordinator.ledger is not None
            coordinator.ledger.add_work("job-1", {"work_type": "selfplay"})
            if coordinator.is_leader():
                success = coordinator.claim_work("job-1")
                assert success
            status = coordinator.get_status()
            assert {"swim", "raft", "http"} <= set(status)
            assert status["consensus_mode"] == "bully" and status["raft"]["enabled"] is False
        finally:
            await coordinator.stop()

    asyncio.run(main())


def run_verbatim(name: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Run a seed example as written, top-level ``await`` included, in ``namespace``."""
    code = compile(
        example_code(name), str(EXAMPLES / name), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )

    async def main() -> None:
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result
        for obj in list(namespace.values()):  # stop what the example started
            for stop in ("stop", "close"):
                fn = getattr(obj, stop, None)
                if fn is not None and type(obj).__module__.startswith("ringrift_fleet."):
                    res = fn()
                    if asyncio.iscoroutine(res):
                        await res
                    break

    asyncio.run(main())
    return namespace


@pytest.mark.timeout(60)
def test_raft_example_verbatim(laptop: pytest.MonkeyPatch) -> None:
    ns = run_verbatim("adapter_raft.py", {})
    assert ns["success"] is True
    assert ns["stats"]["is_leader"] is True and ns["stats"]["claimed"] == 1


@pytest.mark.timeout(60)
def test_hybrid_coordinator_example_verbatim(laptop: pytest.MonkeyPatch) -> None:
    ns = run_verbatim("adapter_hybrid_coordinator.py", {"p2p": None})
    # the example's `if coordinator.is_leader():` branch ran: claim_work was called
    assert "success" in ns, "is_leader() was False right after start()"
    assert ns["peers"] == [] and {"swim", "raft", "http"} <= set(ns["status"])


@pytest.mark.timeout(60)
def test_swim_example_verbatim(laptop: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The SWIM example against an inventory of two loopback hosts, other-node running."""
    import yaml

    from ringrift_fleet.swim_adapter import SwimMembershipManager

    ports = {"my-node": free_port(), "other-node": free_port()}
    hosts = {
        name: {
            "address": "127.0.0.1",
            "swim_port": port,
            "status_port": free_port(),
            "raft_port": free_port(),
        }
        for name, port in ports.items()
    }
    inventory = tmp_path / "distributed_hosts.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": hosts, "raft_voters": ["my-node"]}))
    laptop.setenv("RINGRIFT_P2P_HOSTS_FILE", str(inventory))
    laptop.setenv("RINGRIFT_CLUSTER_KEY", "example")
    laptop.setenv("RINGRIFT_P2P_SWIM_PING_INTERVAL", "0.2")
    laptop.setenv("RINGRIFT_P2P_SWIM_PING_TIMEOUT", "0.08")
    reload_p2p_config()
    sent: list[Any] = []

    async def send_work(*args: Any) -> None:
        sent.append(args)

    async def main() -> dict[str, Any]:
        other = SwimMembershipManager.from_distributed_hosts(node_id="other-node")
        await other.start()
        try:
            ns: dict[str, Any] = {"send_work": send_work}
            code = compile(
                example_code("adapter_swim.py"),
                "adapter_swim.py",
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            result = eval(code, ns)
            if asyncio.iscoroutine(result):
                await result
            manager = ns["manager"]
            try:
                for _ in range(100):  # bounded: SWIM joins within a few protocol periods
                    if manager.is_peer_alive("other-node"):
                        break
                    await asyncio.sleep(0.05)
                ns["joined"] = manager.is_peer_alive("other-node")
            finally:
                await manager.stop()
            return ns
        finally:
            await other.stop()

    ns = asyncio.run(main())
    assert ns["summary"]["node_id"] == "my-node" and ns["summary"]["backend"] == "swim"
    assert isinstance(ns["alive_peers"], list)
    assert ns["joined"], "my-node never saw other-node alive"
