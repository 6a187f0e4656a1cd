"""The README's consensus examples run as written (with ringrift_fleet for app.p2p)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ringrift_fleet.config import reload_feature_flags, reload_p2p_config

pytestmark = pytest.mark.integration


@pytest.fixture
def laptop(fresh_config: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No inventory, state in a temp dir: the README's one-machine setting."""
    fresh_config.setenv("RINGRIFT_P2P_STATE_DIR", str(tmp_path / "state"))
    fresh_config.setenv("RINGRIFT_P2P_HOSTS_FILE", str(tmp_path / "missing.yaml"))
    reload_p2p_config()
    reload_feature_flags()
    return fresh_config


@pytest.mark.timeout(60)
def test_replicated_work_queue_example(laptop: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ringrift_fleet import create_replicated_work_queue

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
    from ringrift_fleet import ReplicatedJobAssignments, create_replicated_work_queue

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
    from ringrift_fleet import HybridCoordinator

    async def main() -> None:
        coordinator = HybridCoordinator(orchestrator=None, node_id="my-node")
        await coordinator.start()
        try:
            peers = coordinator.get_alive_peers()
            assert peers == []
            for _ in range(100):  # bounded: a lone Bully voter leads within a lease round
                if coordinator.is_leader():
                    break
                await asyncio.sleep(0.05)
            assert coordinator.is_leader(), "a fleet of one must lead itself"
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
