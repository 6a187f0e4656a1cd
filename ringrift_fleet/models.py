"""Enums and dataclasses for nodes, jobs and resources, with strict JSON round-trips.

``from_dict`` is the one door through which data from the network, the ledger
or a file becomes a model; it rejects malformed input with a
:class:`~ringrift_fleet.errors.ValidationError` naming the field.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, TypeVar

from ringrift_fleet.errors import ValidationError


class NodeRole(str, Enum):
    LEADER = "leader"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"


class JobType(str, Enum):
    SELFPLAY = "selfplay"
    TRAINING = "training"
    EVALUATION = "evaluation"
    SYNC = "sync"


class JobStatus(str, Enum):
    PENDING = "pending"  # in the ledger, not yet given to anyone
    CLAIMED = "claimed"  # a node (or the scheduler for a node) owns it; not started
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # attempts exhausted, or failed for good
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.CLAIMED, JobStatus.RUNNING)


class NodeHealth(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    OFFLINE = "offline"


E = TypeVar("E", bound=Enum)


# --- field readers: each names the field it rejects ---------------------------------


def games_prefix(config: str) -> str:
    """Where a board config's games files live among the artifacts (``games/hex8_2p/``).

    Self-play writes there, training reads everything there, and a games sync
    fetches everything there that it lacks.
    """
    return f"games/{config}/"


def _where(ctx: str, name: str) -> str:
    return f"{ctx}.{name}" if ctx else name


def req(data: Mapping[str, Any], name: str, ctx: str) -> Any:
    if name not in data:
        raise ValidationError(f"{_where(ctx, name)}: missing required field")
    return data[name]


def as_str(value: Any, name: str, ctx: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise ValidationError(f"{_where(ctx, name)}: expected a non-empty string, got {value!r}")
    return value


def as_float(
    value: Any, name: str, ctx: str, *, lo: float | None = None, hi: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{_where(ctx, name)}: expected a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValidationError(f"{_where(ctx, name)}: {value!r} is outside [{lo}, {hi}]")
    return float(value)


def as_int(value: Any, name: str, ctx: str, *, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{_where(ctx, name)}: expected an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValidationError(f"{_where(ctx, name)}: {value!r} is outside [{lo}, {hi}]")
    return value


def as_bool(value: Any, name: str, ctx: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{_where(ctx, name)}: expected true or false, got {value!r}")
    return value


def as_enum(enum: type[E], value: Any, name: str, ctx: str) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise ValidationError(f"{_where(ctx, name)}: {value!r} is not one of {allowed}") from None


def as_dict(value: Any, name: str, ctx: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValidationError(
            f"{_where(ctx, name)}: expected an object, got {type(value).__name__}"
        )
    return value


def as_mapping(data: Any, ctx: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(f"{ctx}: expected an object, got {type(data).__name__}")
    return data


def opt_str(data: Mapping[str, Any], name: str, ctx: str) -> str | None:
    value = data.get(name)
    return None if value is None else as_str(value, name, ctx, allow_empty=True)


# --- resources -----------------------------------------------------------------------

# load_score weights: CPU and GPU memory dominate whether one more job fits;
# RAM matters less (jobs are GPU-bound) and disk least (it has its own hard gate).
LOAD_WEIGHTS = {"cpu": 0.35, "memory": 0.2, "gpu_memory": 0.35, "disk": 0.1}


@dataclass(frozen=True)
class ResourceMetrics:
    """A host's resource use in percent (0–100)."""

    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    gpu_memory_percent: float = 0.0
    disk_percent: float = 0.0
    gpu_utilization_percent: float = 0.0
    has_gpu: bool = True

    @property
    def load_score(self) -> float:
        """Weighted composite in [0, 1] compared with ``LOAD_MAX_FOR_NEW_JOBS``.

        0.35·CPU + 0.2·RAM + 0.35·VRAM + 0.1·disk; on a CPU-only host the VRAM
        weight moves to CPU, so an idle GPU that does not exist cannot hide a busy CPU.
        """
        w = dict(LOAD_WEIGHTS)
        if not self.has_gpu:
            w["cpu"] += w.pop("gpu_memory")
        total = (
            w["cpu"] * self.cpu_percent
            + w["memory"] * self.memory_percent
            + w.get("gpu_memory", 0.0) * self.gpu_memory_percent
            + w["disk"] * self.disk_percent
        )
        return round(min(max(total / 100.0, 0.0), 1.0), 4)

    def overloaded_resources(
        self,
        *,
        cpu: float = 90.0,
        memory: float = 90.0,
        gpu_memory: float = 95.0,
        disk: float = 70.0,
    ) -> list[str]:
        """Names of the resources over their thresholds (pure; thresholds passed in)."""
        out = []
        if self.cpu_percent > cpu:
            out.append("cpu")
        if self.memory_percent > memory:
            out.append("memory")
        if self.has_gpu and self.gpu_memory_percent > gpu_memory:
            out.append("gpu_memory")
        if self.disk_percent > disk:
            out.append("disk")
        return out

    @property
    def is_overloaded(self) -> bool:
        """True if any resource is over its configured threshold (disk: DISK_CRITICAL_THRESHOLD)."""
        from ringrift_fleet.config import get_p2p_config

        c = get_p2p_config()
        return bool(
            self.overloaded_resources(
                cpu=c.CPU_OVERLOAD_THRESHOLD,
                memory=c.MEMORY_OVERLOAD_THRESHOLD,
                gpu_memory=c.GPU_MEMORY_OVERLOAD_THRESHOLD,
                disk=c.DISK_CRITICAL_THRESHOLD,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, ctx: str = "metrics") -> ResourceMetrics:
        d = as_mapping(data, ctx)
        pct = {
            n: as_float(d.get(n, 0.0), n, ctx, lo=0.0, hi=100.0)
            for n in (
                "cpu_percent",
                "memory_percent",
                "gpu_memory_percent",
                "disk_percent",
                "gpu_utilization_percent",
            )
        }
        return cls(**pct, has_gpu=as_bool(d.get("has_gpu", True), "has_gpu", ctx))


@dataclass(frozen=True)
class NodeSummary:
    """What a node says about itself in heartbeats, SWIM metadata and /status."""

    node_id: str
    host: str = ""
    role: NodeRole = NodeRole.FOLLOWER
    health: NodeHealth = NodeHealth.HEALTHY
    gpu_type: str = "CPU"
    gpu_count: int = 0
    gpu_vram_gb: float = 0.0
    gpu_power: float = 0.1
    metrics: ResourceMetrics = field(default_factory=ResourceMetrics)
    is_voter: bool = False
    status_port: int = 8770
    version: str = ""
    jobs_running: int = 0
    last_seen: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["role"] = self.role.value
        d["health"] = self.health.value
        return d

    @classmethod
    def from_dict(cls, data: Any, ctx: str = "node") -> NodeSummary:
        d = as_mapping(data, ctx)
        return cls(
            node_id=as_str(req(d, "node_id", ctx), "node_id", ctx),
            host=as_str(d.get("host", ""), "host", ctx, allow_empty=True),
            role=as_enum(NodeRole, d.get("role", "follower"), "role", ctx),
            health=as_enum(NodeHealth, d.get("health", "healthy"), "health", ctx),
            gpu_type=as_str(d.get("gpu_type", "CPU"), "gpu_type", ctx),
            gpu_count=as_int(d.get("gpu_count", 0), "gpu_count", ctx, lo=0, hi=64),
            gpu_vram_gb=as_float(d.get("gpu_vram_gb", 0.0), "gpu_vram_gb", ctx, lo=0.0),
            gpu_power=as_float(d.get("gpu_power", 0.1), "gpu_power", ctx, lo=0.0),
            metrics=ResourceMetrics.from_dict(d.get("metrics", {}), f"{ctx}.metrics"),
            is_voter=as_bool(d.get("is_voter", False), "is_voter", ctx),
            status_port=as_int(d.get("status_port", 8770), "status_port", ctx, lo=1, hi=65535),
            version=as_str(d.get("version", ""), "version", ctx, allow_empty=True),
            jobs_running=as_int(d.get("jobs_running", 0), "jobs_running", ctx, lo=0),
            last_seen=as_float(d.get("last_seen", 0.0), "last_seen", ctx, lo=0.0),
        )


# --- jobs ------------------------------------------------------------------------------


@dataclass
class WorkItem:
    """One unit of work in the ledger (Raft or SQLite)."""

    work_id: str
    work_type: JobType
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    max_attempts: int = 3
    claimed_by: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["work_type"] = self.work_type.value
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, data: Any, ctx: str = "work_item") -> WorkItem:
        d = as_mapping(data, ctx)
        result = d.get("result")
        return cls(
            work_id=as_str(req(d, "work_id", ctx), "work_id", ctx),
            work_type=as_enum(JobType, req(d, "work_type", ctx), "work_type", ctx),
            payload=as_dict(d.get("payload", {}), "payload", ctx),
            priority=as_int(d.get("priority", 0), "priority", ctx),
            status=as_enum(JobStatus, d.get("status", "pending"), "status", ctx),
            attempts=as_int(d.get("attempts", 0), "attempts", ctx, lo=0),
            max_attempts=as_int(d.get("max_attempts", 3), "max_attempts", ctx, lo=1),
            claimed_by=opt_str(d, "claimed_by", ctx),
            created_at=as_float(d.get("created_at", 0.0), "created_at", ctx, lo=0.0),
            updated_at=as_float(d.get("updated_at", 0.0), "updated_at", ctx, lo=0.0),
            result=None if result is None else as_dict(result, "result", ctx),
            error=opt_str(d, "error", ctx),
        )


@dataclass
class JobAssignment:
    """A job placed on a node: attempt number and the fence that attempt carries."""

    job_id: str
    node_id: str
    attempt: int = 1
    fence_token: str = ""
    status: JobStatus = JobStatus.CLAIMED
    assigned_at: float = field(default_factory=time.time)
    job_type: JobType = JobType.SELFPLAY

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        d["job_type"] = self.job_type.value
        return d

    @classmethod
    def from_dict(cls, data: Any, ctx: str = "assignment") -> JobAssignment:
        d = as_mapping(data, ctx)
        return cls(
            job_id=as_str(req(d, "job_id", ctx), "job_id", ctx),
            node_id=as_str(req(d, "node_id", ctx), "node_id", ctx),
            attempt=as_int(d.get("attempt", 1), "attempt", ctx, lo=1),
            fence_token=as_str(d.get("fence_token", ""), "fence_token", ctx, allow_empty=True),
            status=as_enum(JobStatus, d.get("status", "claimed"), "status", ctx),
            assigned_at=as_float(d.get("assigned_at", 0.0), "assigned_at", ctx, lo=0.0),
            job_type=as_enum(JobType, d.get("job_type", "selfplay"), "job_type", ctx),
        )
