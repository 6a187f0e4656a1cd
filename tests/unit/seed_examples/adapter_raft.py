# Seed example: 000_1b0aaf31d1295677.txt, section "Raft State Machines", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; tests/integration/test_consensus_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet.raft_state import create_replicated_work_queue

queue = create_replicated_work_queue(node_id="my-node")

# Replicated across cluster
queue.add_work("job-1", {"work_type": "selfplay", "board_type": "hex8"})

# Atomic claim with distributed lock
success = queue.claim_work("job-1", "my-node")

# Queue statistics
stats = queue.get_queue_stats()  # pending, running, is_leader
