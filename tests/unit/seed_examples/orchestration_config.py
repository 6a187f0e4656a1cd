# Seed example: 001_02381373b298663c.txt, section "`config.py` - Configuration", block 1.
# Copied verbatim with app.p2p renamed ringrift_fleet; test_seed_examples.py runs it.
# ruff: noqa
# fmt: off
from ringrift_fleet import P2PConfig, get_p2p_config

config = get_p2p_config()

# Access settings
print(f"Port: {config.DEFAULT_PORT}")  # 8770
print(f"Heartbeat: {config.HEARTBEAT_INTERVAL}s")
print(f"Leader lease: {config.LEADER_LEASE_DURATION}s")

# GPU power rankings for job scheduling
from ringrift_fleet import GPU_POWER_RANKINGS
print(GPU_POWER_RANKINGS["H100"])  # 1.0 (baseline)
print(GPU_POWER_RANKINGS["GH200"])  # 1.2 (faster)
