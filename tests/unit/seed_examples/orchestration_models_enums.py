# Seed example: 001_02381373b298663c.txt, section "`models.py` - Data Structures", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet import NodeRole, JobType, JobStatus, NodeHealth

# Node roles
role = NodeRole.LEADER  # or FOLLOWER, CANDIDATE

# Job types
job = JobType.SELFPLAY  # or TRAINING, EVALUATION, SYNC

# Job status
status = JobStatus.RUNNING  # PENDING, RUNNING, COMPLETED, FAILED

# Node health
health = NodeHealth.HEALTHY  # HEALTHY, DEGRADED, UNHEALTHY, OFFLINE
