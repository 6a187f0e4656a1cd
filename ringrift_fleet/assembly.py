"""The one way a coordinator is put together.

``ringrift-fleet coordinator`` (what systemd runs), ``ringrift-fleet up`` (which
starts that same command), the tests and the benchmarks all go through here:

* :func:`coordinator_inputs` turns the command line and the environment into a
  checked ``P2PConfig`` and inventory (hosts file found and readable, this node
  in it, a cluster key for a fleet of more than one, state dirs writable, the
  bind address resolved) or raises ``ConfigError`` with one line naming the input;
* :func:`build_coordinator` builds the node, its consensus objects and the
  scheduler before any loop starts.  The scheduler is always attached: "no
  scheduling" (``--no-scheduler``) is the policy's ``place_work=False``, under
  which the leader still releases the jobs of hosts membership declares dead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringrift_fleet.config import (
    FeatureFlags,
    P2PConfig,
    check_state_dirs,
    get_feature_flags,
    get_p2p_config,
    resolve_bind_host,
    resolve_hosts_file,
)
from ringrift_fleet.errors import ConfigError
from ringrift_fleet.inventory import Inventory
from ringrift_fleet.inventory import load as load_inventory
from ringrift_fleet.node import CoordinatorNode
from ringrift_fleet.scheduler.service import Hosts, attach, demo_policy, local_hosts
from ringrift_fleet.scheduler.settings import SchedulerPolicy


@dataclass(frozen=True)
class Scheduling:
    """How the scheduler of this coordinator is set up (the command's flags)."""

    place_work: bool = True  # False: --no-scheduler (consensus only, no broker)
    demo: bool = False  # ringrift-fleet up: small thresholds, CPU training
    # without an inventory (--standalone): this machine's worker slots and GPU
    slots: int = 1
    gpu_type: str = "CPU"
    gpu_vram_gb: float = 0.0


@dataclass(frozen=True)
class CoordinatorInputs:
    config: P2PConfig
    inventory: Inventory | None
    flags: FeatureFlags
    node_id: str


def coordinator_inputs(
    node: str | None = None, hosts_file: str | None = None, *, standalone: bool = False
) -> CoordinatorInputs:
    """Configuration, feature flags and inventory, checked; ConfigError names a bad input."""
    config = get_p2p_config()
    flags = get_feature_flags()
    node_id = node or config.NODE_ID
    path = resolve_hosts_file(hosts_file, standalone=standalone)
    check_state_dirs(config)
    inventory = None
    if path is not None:
        inventory = load_inventory(path)
        if node_id not in inventory.names():
            raise ConfigError(
                f"--node {node_id!r} is not a host in {path} "
                f"(hosts: {', '.join(inventory.names())})"
            )
        if len(inventory.hosts) > 1 and not config.CLUSTER_KEY:
            raise ConfigError(
                f"RINGRIFT_CLUSTER_KEY is empty but {path} lists {len(inventory.hosts)} hosts: "
                "set the same secret on every host (it authenticates Raft's pickle wire "
                "format, SWIM and every mutating HTTP route)"
            )
    address = inventory.host(node_id).address if inventory is not None else None
    config = config.replace(
        NODE_ID=node_id,
        HOSTS_FILE=path or "",
        BIND_HOST=resolve_bind_host(config, address),
    )
    return CoordinatorInputs(config, inventory, flags, node_id)


def scheduler_policy(config: P2PConfig, scheduling: Scheduling) -> SchedulerPolicy:
    """The policy the flags ask for (checked: a bad variable is a ConfigError)."""
    if scheduling.demo:
        return demo_policy(config, place_work=scheduling.place_work)
    return SchedulerPolicy.from_config(config, place_work=scheduling.place_work)


def build_coordinator(
    config: P2PConfig,
    inventory: Inventory | None,
    node_id: str,
    *,
    flags: FeatureFlags | None = None,
    scheduling: Scheduling = Scheduling(),
    policy: SchedulerPolicy | None = None,
    hosts: Hosts | None = None,
) -> CoordinatorNode:
    """A coordinator ready to ``run()``: consensus built, the scheduler attached.

    ``policy`` and ``hosts`` replace what ``scheduling`` would choose (tests).
    """
    node = CoordinatorNode(config, inventory, node_id, flags=flags)
    policy = policy or scheduler_policy(config, scheduling)
    if hosts is None and inventory is None:
        hosts = local_hosts(
            config,
            node_id,
            slots=scheduling.slots,
            gpu=scheduling.gpu_type,
            vram_gb=scheduling.gpu_vram_gb,
        )
    attach(node, policy, hosts, broker=policy.place_work)
    return node
