# Seed example: 000_1b0aaf31d1295677.txt, section "Hybrid Coordinator", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; tests/integration/test_consensus_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet.hybrid_coordinator import HybridCoordinator

coordinator = HybridCoordinator(orchestrator=p2p, node_id="my-node")
await coordinator.start()

# Routes to SWIM or HTTP based on MEMBERSHIP_MODE
peers = coordinator.get_alive_peers()

# Routes to Raft or Bully based on CONSENSUS_MODE
if coordinator.is_leader():
    success = coordinator.claim_work("job-1")

status = coordinator.get_status()  # swim, raft, http sections
