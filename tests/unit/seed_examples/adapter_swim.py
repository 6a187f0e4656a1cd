# Seed example: 000_1b0aaf31d1295677.txt, section "SWIM Adapter", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; tests/integration/test_consensus_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet.swim_adapter import SwimMembershipManager

manager = SwimMembershipManager.from_distributed_hosts(node_id="my-node")
await manager.start()

# Fast failure detection (5s vs 60s+ with HTTP)
if manager.is_peer_alive("other-node"):
    await send_work(...)

alive_peers = manager.get_alive_peers()
summary = manager.get_membership_summary()
