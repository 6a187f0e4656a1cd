"""ringrift_fleet: the RingRift AI-training cluster as a Celery worker fleet.

The names users know from the RingRift P2P module are re-exported here.  Light
ones are imported at once; those that pull in Celery, pysyncobj or aiohttp
load on first use, so ``import ringrift_fleet`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

from ringrift_fleet.config import (
    GPU_POWER_RANKINGS,
    FeatureFlags,
    P2PConfig,
    get_feature_flags,
    get_p2p_config,
    reload_feature_flags,
    reload_p2p_config,
)
from ringrift_fleet.errors import ConfigError, FleetError, InventoryError, ValidationError
from ringrift_fleet.models import (
    JobAssignment,
    JobStatus,
    JobType,
    NodeHealth,
    NodeRole,
    NodeSummary,
    ResourceMetrics,
    WorkItem,
)

__version__ = "0.1.0"

# name -> module that defines it; imported on first attribute access.
_LAZY: dict[str, str] = {
    "TrainingThresholds": "ringrift_fleet.training",
    "TrainingDecision": "ringrift_fleet.training",
    "should_trigger_training": "ringrift_fleet.training",
    "calculate_training_priority": "ringrift_fleet.training",
    "calculate_config_training_priority": "ringrift_fleet.training",
    "calculate_node_training_priority": "ringrift_fleet.training",
    "rank_nodes_for_training": "ringrift_fleet.training",
    "normalize_gpu_name": "ringrift_fleet.placement",
    "gpu_power": "ringrift_fleet.placement",
    "WebhookConfig": "ringrift_fleet.notifications",
    "send_webhook_notification": "ringrift_fleet.notifications",
    "SwimConfig": "ringrift_fleet.membership.swim.protocol",
    "SwimMembershipManager": "ringrift_fleet.membership.swim_adapter",
    "HybridMembershipManager": "ringrift_fleet.membership.hybrid",
    "ReplicatedWorkQueue": "ringrift_fleet.consensus.raft_state",
    "ReplicatedJobAssignments": "ringrift_fleet.consensus.raft_state",
    "create_replicated_work_queue": "ringrift_fleet.consensus.raft_state",
    "HybridCoordinator": "ringrift_fleet.hybrid_coordinator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ringrift_fleet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "GPU_POWER_RANKINGS",
    "ConfigError",
    "FeatureFlags",
    "FleetError",
    "InventoryError",
    "JobAssignment",
    "JobStatus",
    "JobType",
    "NodeHealth",
    "NodeRole",
    "NodeSummary",
    "P2PConfig",
    "ResourceMetrics",
    "ValidationError",
    "WorkItem",
    "get_feature_flags",
    "get_p2p_config",
    "reload_feature_flags",
    "reload_p2p_config",
    *sorted(_LAZY),
]
