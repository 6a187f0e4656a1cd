# Seed example: 000_1b0aaf31d1295677.txt, section "Configuration", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet import P2PConfig, get_p2p_config

config = get_p2p_config()
config.HEARTBEAT_INTERVAL      # 15s (peer heartbeat frequency)
config.PEER_TIMEOUT            # 60s (peer considered dead)
config.LEADER_LEASE_DURATION   # 90s (leader lease TTL)
config.DISK_CRITICAL_THRESHOLD # 70% (reject jobs above this)
